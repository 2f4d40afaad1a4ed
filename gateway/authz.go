package gateway

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/fundplatform/fund/gateway/auth"
)

// Metadata keys the gateway reads. grpc-gateway forwards the HTTP
// Authorization header as "authorization"; the HTTP Idempotency-Key header
// is forwarded as "idempotency-key" by the mux's header matcher.
const (
	mdAuthorization  = "authorization"
	mdIdempotencyKey = "idempotency-key"
)

// firstMD is the first value of the incoming metadata key (lower case).
// ValueFromIncomingContext copies only that key's values, not the whole
// metadata as FromIncomingContext does.
func firstMD(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// principal verifies the caller's bearer token.
func (g *Gateway) principal(ctx context.Context) (auth.Principal, error) {
	p, err := g.verifier.Verify(firstMD(ctx, mdAuthorization))
	if err != nil {
		return auth.Principal{}, statusOf(err, g.log)
	}
	return p, nil
}

// actOn authorises the caller to act on customer c (its own, or any with the
// admin scope) and, for a customer's own call, spends a token of c's rate
// limit. An admin call spends none: operators and back-office tools acting
// on a customer must neither be refused for the customer's traffic nor
// leave the customer fewer requests (the global concurrency limit still
// bounds them).
func (g *Gateway) actOn(ctx context.Context, c int64) (auth.Principal, error) {
	p, err := g.principal(ctx)
	if err != nil {
		return p, err
	}
	if c <= 0 {
		var v violations
		v.add("customer_id", "must be a positive customer id")
		return p, v.err()
	}
	if !p.MayActOn(c) {
		return p, forbidden("this token may not act on that customer")
	}
	if p.Admin() {
		return p, nil
	}
	if err := g.rateLimit(c); err != nil {
		return p, err
	}
	return p, nil
}

// admin authorises an admin-scope call.
func (g *Gateway) admin(ctx context.Context) (auth.Principal, error) {
	p, err := g.principal(ctx)
	if err != nil {
		return p, err
	}
	if !p.Admin() {
		return p, forbidden("this call needs the admin scope")
	}
	return p, nil
}

// requestID is the order's client request id: the Idempotency-Key header,
// or the request_id field. Both given and different is an error; neither is
// too.
func requestID(ctx context.Context, field string, v *violations) string {
	header := strings.TrimSpace(firstMD(ctx, mdIdempotencyKey))
	switch {
	case header != "" && field != "" && header != field:
		v.add("request_id", "differs from the Idempotency-Key header")
	case header != "":
		return header
	case field == "":
		v.add("request_id", "required: send an Idempotency-Key header or a request_id field")
	}
	return field
}
