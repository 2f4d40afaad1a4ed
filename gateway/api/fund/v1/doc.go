// Package fundv1 is the API of the fund platform as protobuf: FundService
// (fund.proto: a customer's orders and queries) and AdminService
// (admin.proto: operators), with their google.api.http REST mapping. The
// *.pb.go, *_grpc.pb.go, *.pb.gw.go and *.swagger.json files are generated
// by `make proto`; OpenAPI (openapi.go, written by hand) merges the two
// swagger documents into the one the gateway serves at /openapi.json.
//
//	conn, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
//	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
//	order, err := fundv1.NewFundServiceClient(conn).Subscribe(ctx, &fundv1.OrderRequest{
//		CustomerId: 42, RequestId: "sub-1", Amount: "100.00"})
package fundv1
