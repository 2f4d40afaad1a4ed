// Package gateway is the platform's front door: the FundService (a
// customer's orders and queries) and the AdminService (customers' life
// cycle, merchants, settlement, reconciliation) over gRPC and, through
// grpc-gateway/v2, over REST/JSON, described by a Swagger 2.0 document at
// /openapi.json and an OpenAPI 3 document at /openapi3.json: both generated
// from the protos by `make proto`, with the error model (every reason of
// errorTable, examples) added by apidoc.go. gateway/api/clienttest runs a
// client generated from the OpenAPI 3 one.
//
// How a REST request flows: apiMiddleware (metrics, access log, panic
// guard) -> grpc-gateway's mux matches the route -> routeMiddleware (route
// label) -> serveRoute (body rules: application/json, size limit,
// well-formed JSON; then the global concurrency limit that sheds at once
// with 429 and Retry-After, fixed or following a latency target; the
// request deadline) -> protojson decoding (unknown fields refused) -> the
// server method, called in-process (measured cheaper than a loopback gRPC
// hop: BenchmarkRESTPath). The order calls (POST
// /v1/customers/{id}/subscriptions and the like), most of the traffic,
// skip the mux and the generated handlers: orderPath does the same for them
// for less (BenchmarkHandlerOrder; TestFastPathMatchesMux compares the
// two), and the codec writes the hot answers and reads the usual order body
// by hand, byte for byte as protojson would (TestCodecMatchesProtojson,
// TestBodyDecoderMatchesJSONPb). Then -> authentication and authorisation (bearer JWT from gateway/auth, the
// verified tokens remembered; customer tokens act on their own customer,
// admin calls need the admin scope), the per-customer rate limit,
// validation -> accounts.Service -> the ledger: through the routing client
// (ledger/grpc), which rides out a failover within the request's deadline,
// with a circuit breaker per owner address (OwnerBreakers), or, for a
// ledger in the same process, through a BreakerClient per shard. Native gRPC calls take the same path from the server method
// on, behind a unary interceptor that applies the same limits.
//
// Errors have one shape, on both paths and over gRPC: a google.rpc.Status
// whose details hold an ErrorInfo (domain fund.v1) with a reason of one
// table (errorTable, listed in docs/api-errors.md and the OpenAPI
// documents), a BadRequest naming each field at fault, and a message for
// the API's user, never a parser's or a driver's text (resterrors.go gives
// that shape to what grpc-gateway's generated code refuses). 400
// validation, the body's form (413 too large, 415 not JSON), path and query
// parameters; 401, 403, 404, 405; 409 idempotency conflict; 422 insufficient
// funds, limit reached, frozen or closed customer (a rejected order comes
// back as 422 with the order, status REJECTED, in the details; a retry gets
// the same); 429 with Retry-After; 503 with Retry-After for every way a
// dependency fails (a shard closed, moved, ownerless or unreachable, the
// breaker open, the accounts database away: accounts.ErrUnavailable, which
// its adapter classifies), 504 deadline. A 500 is a bug, and is logged.
// Admin calls do not spend the customer's rate limit.
//
//	gw, _ := gateway.New(gateway.Config{JWTKey: key, Accounts: svc})
//	err := gw.Serve(ctx, httpListener, grpcListener) // until ctx ends, then drains
package gateway
