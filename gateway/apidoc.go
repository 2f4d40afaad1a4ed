package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fundplatform/fund/accounts"
	fundv1 "github.com/fundplatform/fund/gateway/api/fund/v1"
)

// The documents the gateway serves: the ones `make proto` generates from
// the protos (fundv1.OpenAPI, Swagger 2.0 at /openapi.json; fundv1.OpenAPI3,
// OpenAPI 3 at /openapi3.json), plus what only the gateway knows, its error
// model. Every error is a google.rpc.Status whose details hold an ErrorInfo
// (domain fund.v1, a reason) and, when request fields are at fault, a
// BadRequest. The reasons are read here from errorTable (Reasons), whose
// rows hold the gateway's own refusals too, so the documents list exactly
// what the gateway answers (TestDocumentedReasons checks that no other
// reason is written in the gateway's code). The examples are real answers:
// messages encoded by the codec that answers requests.

// errorReason is one ErrorInfo reason as the documents list it.
type errorReason struct {
	reason  string
	http    int
	meaning string
}

// documentedReasons lists every reason once, in the table's order, with
// the HTTP status the gateway answers it with and when (Reasons).
func documentedReasons() []errorReason {
	var out []errorReason
	for _, r := range Reasons() {
		out = append(out, errorReason{reason: r.Reason, http: r.HTTP, meaning: r.When})
	}
	return out
}

// reasonNames are the reasons alone, in documentedReasons' order.
func reasonNames(rs []errorReason) []any {
	names := make([]any, len(rs))
	for i, r := range rs {
		names[i] = r.reason
	}
	return names
}

// reasonTable is the reasons as a Markdown table, for the documents'
// descriptions.
func reasonTable(rs []errorReason) string {
	var b strings.Builder
	b.WriteString("| reason | HTTP status | meaning |\n| --- | --- | --- |\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %s |\n", r.reason, r.http, strings.ReplaceAll(r.meaning, "|", "/"))
	}
	return b.String()
}

// exampleOperation is the order call whose answers the documents show as
// examples.
const exampleOperation = "FundService_Subscribe"

// typeURL is the "@type" of a detail of message m, as protojson writes it.
func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// The details an error may carry. Each schema pins its "@type", so that a
// detail fits exactly one of them (or, of another type, the catch-all).
var (
	errorInfoType  = typeURL(&errdetails.ErrorInfo{})
	badRequestType = typeURL(&errdetails.BadRequest{})
	retryInfoType  = typeURL(&errdetails.RetryInfo{})
	orderType      = typeURL(&fundv1.Order{})
)

// errorDescription heads the error response of every operation.
const errorDescription = "An error: a google.rpc.Status (code, message, details). details holds an ErrorInfo " +
	"(domain fund.v1; its reason, from the list in ErrorInfo.reason, says what went wrong and fixes the HTTP status) " +
	"and, when request fields are at fault, a BadRequest naming each. A rejected order (422) also carries the " +
	"order, status REJECTED. 429 and 503 answers are safe to retry with the same Idempotency-Key (429 after Retry-After)."

// apiExamples are the example bodies of exampleOperation, as JSON values.
type apiExamples struct {
	success  any // a pending subscription
	rejected any // 422 INSUFFICIENT_FUNDS, with the rejected order
	invalid  any // 400 INVALID_ARGUMENT, a BadRequest for amount
}

func newAPIExamples(c *codec) (apiExamples, error) {
	at := time.Date(2026, 11, 11, 1, 30, 0, 0, time.UTC) // 09:30 in Beijing, before the cut-off
	o := accounts.Order{
		CustomerID: 42, RequestID: "sub-2026-11-11-0001", Kind: accounts.KindSubscribe, Amount: 10_000,
		TradeDate: at, ConfirmDate: at.AddDate(0, 0, 1), Status: accounts.OrderPending, CreatedAt: at,
	}
	rej := o
	rej.RequestID, rej.ConfirmDate, rej.Status, rej.Reason = "sub-2026-11-11-0002", time.Time{}, accounts.OrderRejected, "insufficient_funds"
	var v violations
	parseAmount("100.005", &v)
	var ex apiExamples
	for _, e := range []struct {
		dst *any
		msg proto.Message
	}{
		{&ex.success, orderMsg(o)},
		{&ex.rejected, status.Convert(statusOf(rej.Err(), nil, orderMsg(rej))).Proto()},
		{&ex.invalid, status.Convert(v.err()).Proto()},
	} {
		raw, err := c.Marshal(e.msg)
		if err != nil {
			return apiExamples{}, err
		}
		if err := json.Unmarshal(raw, e.dst); err != nil {
			return apiExamples{}, err
		}
	}
	return ex, nil
}

// apiDocuments builds the served documents: Swagger 2.0 and OpenAPI 3, as
// JSON.
func apiDocuments(c *codec) (v2, v3 []byte, err error) {
	ex, err := newAPIExamples(c)
	if err != nil {
		return nil, nil, fmt.Errorf("examples: %w", err)
	}
	reasons := documentedReasons()
	for _, d := range []struct {
		out      *[]byte
		generate func() ([]byte, error)
		complete func(map[string]any, []errorReason, apiExamples) error
	}{
		{&v2, fundv1.OpenAPI, completeSwagger2},
		{&v3, fundv1.OpenAPI3, completeOpenAPI3},
	} {
		raw, err := d.generate()
		if err != nil {
			return nil, nil, err
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, nil, err
		}
		if err := d.complete(doc, reasons, ex); err != nil {
			return nil, nil, err
		}
		if *d.out, err = json.MarshalIndent(doc, "", "  "); err != nil {
			return nil, nil, err
		}
	}
	return v2, v3, nil
}

// object returns m[keys[0]][keys[1]]..., creating the objects missing on
// the way.
func object(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return m
}

// operations calls f with every operation of the document's paths.
func operations(doc map[string]any, f func(id string, op map[string]any)) {
	for _, item := range object(doc, "paths") {
		methods, _ := item.(map[string]any)
		for _, op := range methods {
			if op, ok := op.(map[string]any); ok {
				id, _ := op["operationId"].(string)
				f(id, op)
			}
		}
	}
}

// errorSchemas are the schemas of the two details every error may carry,
// in either document's schema dialect (the same JSON Schema subset).
func errorSchemas(reasons []errorReason) (errorInfo, badRequest map[string]any) {
	str := map[string]any{"type": "string"}
	errorInfo = map[string]any{
		"type":        "object",
		"description": "Why a request failed: every error's details hold one.",
		"required":    []any{"@type", "reason", "domain"},
		"properties": map[string]any{
			"@type": map[string]any{"type": "string", "enum": []any{errorInfoType}},
			"reason": map[string]any{"type": "string", "enum": reasonNames(reasons),
				"description": "What went wrong. Each reason always comes with the same HTTP status:\n\n" + reasonTable(reasons)},
			"domain":   map[string]any{"type": "string", "enum": []any{errorDomain}},
			"metadata": map[string]any{"type": "object", "additionalProperties": str},
		},
	}
	badRequest = map[string]any{
		"type":        "object",
		"description": "The request fields at fault, every one of them (400).",
		"required":    []any{"@type", "field_violations"},
		"properties": map[string]any{
			"@type": map[string]any{"type": "string", "enum": []any{badRequestType}},
			"field_violations": map[string]any{"type": "array", "items": map[string]any{
				"type":     "object",
				"required": []any{"field", "description"},
				"properties": map[string]any{
					"field":       map[string]any{"type": "string", "description": "the field's JSON name, e.g. amount"},
					"description": map[string]any{"type": "string", "description": "what is wrong with it"},
				},
			}},
		},
	}
	return errorInfo, badRequest
}

// completeSwagger2 adds the error model and the examples to the Swagger 2.0
// document (its error schema is the generator's rpcStatus).
func completeSwagger2(doc map[string]any, reasons []errorReason, ex apiExamples) error {
	defs := object(doc, "definitions")
	if _, ok := defs["rpcStatus"]; !ok {
		return fmt.Errorf("swagger: no rpcStatus definition")
	}
	defs["rpcErrorInfo"], defs["rpcBadRequest"] = errorSchemas(reasons)
	object(defs, "rpcStatus")["description"] = errorDescription +
		" The details' schemas: rpcErrorInfo, rpcBadRequest, fund.v1.Order (v1Order)."
	found := false
	operations(doc, func(id string, op map[string]any) {
		def := object(op, "responses", "default")
		def["description"] = errorDescription
		if id == exampleOperation {
			found = true
			object(op, "responses", "200", "examples")["application/json"] = ex.success
			object(def, "examples")["application/json"] = ex.rejected
		}
	})
	if !found {
		return fmt.Errorf("swagger: no operation %s", exampleOperation)
	}
	return nil
}

// completeOpenAPI3 adds the error model and the examples to the OpenAPI 3
// document: the generator's Status gets typed details, and every
// operation's default response is components.responses.Error (the example
// operation's is the same, inline, with examples).
func completeOpenAPI3(doc map[string]any, reasons []errorReason, ex apiExamples) error {
	schemas := object(doc, "components", "schemas")
	st, ok := schemas["Status"].(map[string]any)
	if !ok {
		return fmt.Errorf("openapi3: no Status schema")
	}
	schemas["ErrorInfo"], schemas["BadRequest"] = errorSchemas(reasons)
	addDetailSchemas(schemas)
	st["required"] = []any{"code", "message", "details"}
	object(st, "properties", "details")["items"] = map[string]any{"oneOf": []any{
		map[string]any{"$ref": "#/components/schemas/ErrorInfo"},
		map[string]any{"$ref": "#/components/schemas/BadRequest"},
		map[string]any{"$ref": "#/components/schemas/RetryInfo"},
		map[string]any{"$ref": "#/components/schemas/OrderDetail"},
		map[string]any{"$ref": "#/components/schemas/OtherDetail"},
	}}
	errorResponse := func() map[string]any {
		return map[string]any{"description": errorDescription, "content": map[string]any{
			"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Status"}}}}
	}
	object(doc, "components", "responses")["Error"] = errorResponse()
	found := false
	operations(doc, func(id string, op map[string]any) {
		responses := object(op, "responses")
		if id != exampleOperation {
			responses["default"] = map[string]any{"$ref": "#/components/responses/Error"}
			return
		}
		found = true
		object(responses, "200", "content", "application/json")["examples"] = map[string]any{
			"pending": map[string]any{"summary": "subscribed before the 15:00 cut-off; confirmed on the next trading day", "value": ex.success}}
		def := errorResponse()
		object(def, "content", "application/json")["examples"] = map[string]any{
			"insufficient_funds": map[string]any{"summary": "422: not enough cash; the order is stored as REJECTED", "value": ex.rejected},
			"invalid_amount":     map[string]any{"summary": "400: the amount has more than two decimals", "value": ex.invalid},
		}
		responses["default"] = def
	})
	if !found {
		return fmt.Errorf("openapi3: no operation %s", exampleOperation)
	}
	return nil
}

// addDetailSchemas adds the OpenAPI 3 schemas of the details beside
// ErrorInfo and BadRequest: RetryInfo (429 answers; Retry-After says the
// same), the order of a rejection or an idempotency conflict, and a
// catch-all for a detail of any other type (which no answer carries today:
// a client should skip what it does not know).
func addDetailSchemas(schemas map[string]any) {
	typed := func(url string) map[string]any {
		return map[string]any{"type": "string", "enum": []any{url}}
	}
	schemas["RetryInfo"] = map[string]any{
		"type": "object", "description": "When to retry (429): the same as the Retry-After header.",
		"required": []any{"@type", "retry_delay"},
		"properties": map[string]any{"@type": typed(retryInfoType),
			"retry_delay": map[string]any{"type": "string", "description": "a duration in seconds, e.g. 1s"}},
	}
	schemas["OrderDetail"] = map[string]any{
		"description": "The order a rejection (422, status REJECTED) or an idempotency conflict (409, the stored order) refers to.",
		"allOf": []any{map[string]any{"$ref": "#/components/schemas/Order"}, map[string]any{
			"type": "object", "required": []any{"@type"}, "properties": map[string]any{"@type": typed(orderType)}}},
	}
	schemas["OtherDetail"] = map[string]any{
		"type": "object", "description": "A detail of another type.", "required": []any{"@type"},
		"properties": map[string]any{"@type": map[string]any{"type": "string",
			"not": map[string]any{"enum": []any{errorInfoType, badRequestType, retryInfoType, orderType}}}},
		"additionalProperties": true,
	}
}
