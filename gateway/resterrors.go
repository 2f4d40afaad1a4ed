package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The REST edge's errors. Every answer that is not a success is written by
// writeStatus, as one shape: a google.rpc.Status whose details hold an
// ErrorInfo with a reason of the error table, a BadRequest when a field is
// at fault, a RetryInfo (and the Retry-After header) on 429, 503 and 504.
// Most errors already have that shape when they get here (the servers
// answer through statusOf and the gateway's own refusals through
// gatewayError); edgeStatus gives it to the rest, which come from
// grpc-gateway's generated handlers and mux as a bare InvalidArgument whose
// text is a parser's (protojson's, strconv's) or as a routing status, and
// to a bare status from a loopback gRPC hop.

// httpError is the mux's error handler, and the direct order path's.
func (g *Gateway) httpError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	g.writeStatus(w, g.edgeStatus(ctx, r, err))
}

// routingError answers a request no route matched with the routing status
// itself (404, 405, 400).
func (g *Gateway) routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, code int) {
	var st *status.Status
	switch code {
	case http.StatusMethodNotAllowed:
		st = gatewayError(reasonMethodNotAllowed, "this path does not take that HTTP method")
	case http.StatusBadRequest:
		st = gatewayError(reasonMalformedPath, "the URL path is malformed")
	default:
		st = gatewayError(reasonRouteNotFound, "no route of the API has this path")
	}
	g.writeStatus(w, st)
}

// edgeStatus gives err the API's error shape.
func (g *Gateway) edgeStatus(ctx context.Context, r *http.Request, err error) *status.Status {
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		// The mux's own: a path with a malformed percent escape.
		if hse.HTTPStatus == http.StatusBadRequest {
			return gatewayError(reasonMalformedPath, "the URL path is malformed (a bad percent escape)")
		}
		err = hse.Err
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a status: a failure of the gateway's own (an answer it
		// could not encode).
		return status.Convert(statusOf(err, g.log))
	}
	if reasonOf(st) != "" {
		return st
	}
	if st.Code() == codes.InvalidArgument {
		return invalidRequest(ctx, r, st)
	}
	// A bare status: a loopback gRPC hop's transport, or a bug.
	return status.Convert(statusOf(err, g.log))
}

// Texts of grpc-gateway's generated handlers for a path parameter they
// cannot parse or do not find.
const (
	gwTypeMismatch = "type mismatch, parameter: "
	gwMissingParam = "missing parameter "
)

// invalidRequest is the answer to a bare InvalidArgument of grpc-gateway's
// generated handlers: the body did not decode into the request, a path
// parameter did not parse, or a query parameter did not. Which field was at
// fault is found again here from the request and the call's descriptors,
// not read from the parser's text, which is not for the API's user.
func invalidRequest(ctx context.Context, r *http.Request, st *status.Status) *status.Status {
	if rb, ok := r.Body.(*requestBody); ok && rb.decodeErr != nil {
		reason, field, desc := bodyViolation(rb.raw, rb.target)
		return fieldError(reason, field, desc)
	}
	msg := st.Message()
	if rest, ok := strings.CutPrefix(msg, gwTypeMismatch); ok {
		name, _, _ := strings.Cut(rest, ",")
		return fieldError(reasonInvalidPathParam, name, "the path's value must be "+describeField(inputField(ctx, name)))
	}
	if name, ok := strings.CutPrefix(msg, gwMissingParam); ok {
		return fieldError(reasonInvalidPathParam, name, "is missing from the path")
	}
	field, desc := queryViolation(ctx, r)
	return fieldError(reasonInvalidQueryParam, field, desc)
}

// bodyFieldsMax bounds the fields bodyViolation looks at (a body is at most
// BodyBytesMax bytes anyway).
const bodyFieldsMax = 256

// bodyViolation finds why raw (a body protojson refused for a request of
// type mt) does not fit: not JSON, not an object, or the first field that
// is unknown, given twice, given with another of its oneof, or of the wrong
// type (each field is decoded alone to see). It returns the reason, the
// field at fault ("body" for the whole) and what is wrong with it.
func bodyViolation(raw []byte, mt protoreflect.MessageType) (reason, field, desc string) {
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return reasonMalformedJSON, "body", "is not well-formed JSON"
	}
	if len(raw) == 0 || raw[0] != '{' {
		return reasonInvalidBody, "body", "must be a JSON object"
	}
	if mt == nil {
		return reasonInvalidBody, "body", "does not fit this call"
	}
	md := mt.Descriptor()
	dec := json.NewDecoder(bytes.NewReader(raw))
	_, _ = dec.Token() // '{': checked above
	seen := map[protoreflect.FieldNumber]bool{}
	oneofs := map[protoreflect.FullName]string{}
	for i := 0; dec.More() && i < bodyFieldsMax; i++ {
		tok, err := dec.Token()
		key, ok := tok.(string)
		var val json.RawMessage
		if err != nil || !ok || dec.Decode(&val) != nil {
			return reasonMalformedJSON, "body", "is not well-formed JSON"
		}
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		switch {
		case fd == nil:
			return reasonInvalidBody, key, "is not a field of this request"
		case seen[fd.Number()]:
			return reasonInvalidBody, key, "is given more than once"
		}
		seen[fd.Number()] = true
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, ok := oneofs[od.FullName()]; ok {
				return reasonInvalidBody, key, "cannot be given with " + other + ": give one of them"
			}
			oneofs[od.FullName()] = key
		}
		one, _ := json.Marshal(map[string]json.RawMessage{key: val})
		if protojson.Unmarshal(one, mt.New().Interface()) != nil {
			return reasonInvalidBody, key, "must be " + describeField(fd)
		}
	}
	return reasonInvalidBody, "body", "does not fit this call"
}

// queryViolation finds the query parameter grpc-gateway could not put
// into the call's request: each is populated alone, as the mux does.
func queryViolation(ctx context.Context, r *http.Request) (field, desc string) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "query", "is not a valid URL query string"
	}
	if mt := inputType(ctx); mt != nil {
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			err := runtime.PopulateQueryParameters(mt.New().Interface(), url.Values{k: values[k]}, utilities.NewDoubleArray(nil))
			if err != nil {
				return k, "must be " + describeField(inputField(ctx, k))
			}
		}
	}
	return "query", "does not fit this call"
}

// inputType is the request message type of the call grpc-gateway routed to
// (nil when unknown).
func inputType(ctx context.Context) protoreflect.MessageType {
	method, ok := runtime.RPCMethod(ctx) // "/fund.v1.FundService/GetHoldings"
	if !ok {
		return nil
	}
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	m := sd.Methods().ByName(protoreflect.Name(name))
	if m == nil {
		return nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
	if err != nil {
		return nil
	}
	return mt
}

// inputField is the field of the call's request that name (a proto or JSON
// name) names; nil when unknown.
func inputField(ctx context.Context, name string) protoreflect.FieldDescriptor {
	mt := inputType(ctx)
	if mt == nil {
		return nil
	}
	fields := mt.Descriptor().Fields()
	if fd := fields.ByTextName(name); fd != nil {
		return fd
	}
	return fields.ByJSONName(name)
}

// describeField says, for the API's user, what a field's JSON value must
// be.
func describeField(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd == nil:
		return "a valid value"
	case fd.IsMap():
		return "a JSON object"
	case fd.IsList():
		return "a JSON array"
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "a JSON string"
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "a whole number"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "a whole number, not negative"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	case protoreflect.BytesKind:
		return "base64 text"
	case protoreflect.EnumKind:
		var names []string
		vals := fd.Enum().Values()
		for i := range vals.Len() {
			if v := vals.Get(i); v.Number() != 0 || !strings.HasSuffix(string(v.Name()), "_UNSPECIFIED") {
				names = append(names, string(v.Name()))
			}
		}
		return "one of " + strings.Join(names, ", ")
	case protoreflect.MessageKind:
		if fd.Message().FullName() == timestampName {
			return "an RFC 3339 time, like 2026-11-11T15:00:00Z"
		}
		return "a JSON object"
	}
	return "a valid value"
}

// writeStatus writes st as the answer: its HTTP status (the row's, by the
// reason), Retry-After on 429, 503 and 504, the body as JSON.
func (g *Gateway) writeStatus(w http.ResponseWriter, st *status.Status) {
	var reason string
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	code := httpStatus(st.Code())
	if m := rowOf(reason); m != nil {
		code = m.httpStatus()
	}
	body, err := g.codec.Marshal(st.Proto())
	if err != nil {
		body, code, retry = internalBody, http.StatusInternalServerError, nil
	}
	switch code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		w.Header().Set("Retry-After", retrySeconds(retry))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// internalBody answers when even an error cannot be encoded.
var internalBody = []byte(fmt.Sprintf(
	`{"code":%d,"message":"internal error","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":%q,"domain":%q,"metadata":{}}]}`,
	codes.Internal, reasonInternal, errorDomain))
