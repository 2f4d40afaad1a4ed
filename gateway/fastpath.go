package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// The order calls (POST /v1/customers/{customer_id}/<kind>) are most of the
// traffic, and grpc-gateway's generic pipeline costs more per request than
// the call itself: the mux tries the routes one by one, the generated
// handler adds a cancel context, a transport stream, a marshaler lookup
// (parsing Content-Type), the incoming metadata from every header and a
// response-metadata context. orderPath serves these calls directly, doing
// what that pipeline does for them, and hands every request that is not
// plainly one of them, or that uses a feature of the pipeline it does not
// reproduce, to the mux. TestFastPathMatchesMux sends the same requests
// through both and compares the answers and metrics.
//
// What orderPath does as the pipeline does: the route's metrics label;
// readBody, the concurrency limit and the deadline (serveRoute, shared with
// routeMiddleware); the body decoded by the codec (protojson), customer_id
// from the path (base 10) overriding the body's; metadata "authorization"
// and "idempotency-key" (the headers' printable-ASCII values, in order) and
// "x-forwarded-host" and "x-forwarded-for" as grpc-gateway derives them;
// errors through the mux's error handler (httpError); the answer as
// Content-Type application/json and the codec's JSON. What it leaves to the
// mux: any other method or path shape, an escaped path, a customer_id that
// is not plain digits, and requests with Grpc-Timeout (a deadline from the
// client), TE (trailers) or X-HTTP-Method-Override. Not reproduced: the
// grpc.ServerTransportStream (the fund server sets no gRPC headers or
// trailers: if it ever does, they must be forwarded here as
// ForwardResponseMessage does) and the runtime.RPCMethod and HTTPPathPattern
// context values (nothing reads them).
type orderPath struct {
	g      *Gateway
	next   http.Handler // the mux
	routes map[string]*orderRoute
}

// orderRoute is one order call.
type orderRoute struct {
	rm   *routeMetrics
	call func(ctx context.Context, c *codec, body *requestBody, customer int64) (proto.Message, error)
}

const ordersPrefix = "/v1/customers/"

func (g *Gateway) newOrderPath(next http.Handler) *orderPath {
	s := g.fund
	setOrder := func(r *fundv1.OrderRequest, c int64) { r.CustomerId = c }
	calls := map[string]func(context.Context, *codec, *requestBody, int64) (proto.Message, error){
		"topups":        orderCall(setOrder, s.TopUp),
		"subscriptions": orderCall(setOrder, s.Subscribe),
		"withdrawals":   orderCall(setOrder, s.Withdraw),
		"redemptions":   orderCall(func(r *fundv1.RedeemRequest, c int64) { r.CustomerId = c }, s.Redeem),
		"transfers":     orderCall(func(r *fundv1.TransferRequest, c int64) { r.CustomerId = c }, s.Transfer),
		"payments":      orderCall(func(r *fundv1.PayRequest, c int64) { r.CustomerId = c }, s.Pay),
	}
	p := &orderPath{g: g, next: next, routes: make(map[string]*orderRoute, len(calls))}
	for kind, call := range calls {
		// The label the mux's route gets: method and pattern as
		// runtime.Pattern prints it.
		p.routes[kind] = &orderRoute{rm: g.routes.get(http.MethodPost, ordersPrefix+"{customer_id=*}/"+kind), call: call}
	}
	return p
}

// orderCall decodes the body into a new request as the generated handler
// does (a decoding error is InvalidArgument, an empty body an empty
// request), sets its customer_id and calls the server.
func orderCall[R any, PR interface {
	*R
	proto.Message
}](setCustomer func(PR, int64), call func(context.Context, PR) (*fundv1.Order, error)) func(context.Context, *codec, *requestBody, int64) (proto.Message, error) {
	return func(ctx context.Context, c *codec, body *requestBody, customer int64) (proto.Message, error) {
		req := PR(new(R))
		if err := c.NewDecoder(body).Decode(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, status.Errorf(codes.InvalidArgument, "%v", err)
		}
		setCustomer(req, customer)
		return call(ctx, req)
	}
}

// match returns the route and customer of a request this path serves.
func (p *orderPath) match(r *http.Request) (*orderRoute, int64, bool) {
	if r.Method != http.MethodPost || r.URL.RawPath != "" || !strings.HasPrefix(r.URL.Path, ordersPrefix) {
		return nil, 0, false
	}
	rest := r.URL.Path[len(ordersPrefix):]
	slash := strings.IndexByte(rest, '/')
	if slash < 1 || slash > 18 { // 18 digits cannot overflow an int64
		return nil, 0, false
	}
	route, ok := p.routes[rest[slash+1:]]
	if !ok {
		return nil, 0, false
	}
	var c int64
	for i := range slash {
		d := rest[i]
		if d < '0' || d > '9' {
			return nil, 0, false
		}
		c = c*10 + int64(d-'0')
	}
	h := r.Header
	if len(h["Grpc-Timeout"]) > 0 || len(h["Te"]) > 0 || len(h["X-Http-Method-Override"]) > 0 {
		return nil, 0, false
	}
	return route, c, true
}

func (p *orderPath) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, customer, ok := p.match(r)
	if !ok {
		p.next.ServeHTTP(w, r)
		return
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.route = route.rm
	}
	p.g.serveRoute(w, r, func(ctx context.Context, w http.ResponseWriter, r *http.Request) {
		p.serve(ctx, w, r, route, customer)
	})
}

func (p *orderPath) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, route *orderRoute, customer int64) {
	if md := incomingMetadata(r); len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	body, _ := r.Body.(*requestBody)
	if body == nil {
		body = newRequestBody(nil)
	}
	resp, err := route.call(ctx, p.g.codec, body, customer)
	if err != nil {
		p.g.httpError(ctx, nil, p.g.codec, w, r, err)
		return
	}
	buf, err := p.g.codec.Marshal(resp)
	if err != nil {
		p.g.httpError(ctx, nil, p.g.codec, w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf)
}

// incomingMetadata is the metadata grpc-gateway's AnnotateIncomingContext
// makes of an order request with the gateway's header matcher: the
// Authorization and Idempotency-Key values that are valid gRPC metadata
// (printable ASCII), x-forwarded-host from X-Forwarded-Host or Host, and
// x-forwarded-for from X-Forwarded-For and the peer's address.
func incomingMetadata(r *http.Request) metadata.MD {
	md := make(metadata.MD, 4)
	// One backing array for the usual single values (each key's slice is
	// capped, so that a second value copies out instead of overwriting).
	vals := make([]string, 0, 4)
	add := func(key, v string) {
		if old, ok := md[key]; ok {
			md[key] = append(old, v)
			return
		}
		vals = append(vals, v)
		md[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for _, v := range r.Header["Authorization"] {
		if validMDValue(v) {
			add(mdAuthorization, v)
		}
	}
	for _, v := range r.Header["Idempotency-Key"] {
		if validMDValue(v) {
			add(mdIdempotencyKey, v)
		}
	}
	if host := r.Header.Get("X-Forwarded-Host"); host != "" && validMDValue(host) {
		add("x-forwarded-host", host)
	} else if r.Host != "" && validMDValue(r.Host) {
		add("x-forwarded-host", r.Host)
	}
	var xff []string
	for _, v := range r.Header["X-Forwarded-For"] {
		if validMDValue(v) {
			xff = append(xff, v)
		}
	}
	if r.RemoteAddr != "" {
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && validMDValue(ip) {
			xff = append(xff, ip)
		}
	}
	if len(xff) > 0 {
		add("x-forwarded-for", strings.Join(xff, ", "))
	}
	return md
}

// validMDValue reports whether v is valid as a gRPC metadata value:
// printable ASCII, 0x20 to 0x7E.
func validMDValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}
