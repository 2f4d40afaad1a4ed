package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// servedDocument fetches one of the gateway's documents as a client would.
func servedDocument(t *testing.T, h http.Handler, path string) []byte {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Header().Get("Content-Type"))
	}
	return w.Body.Bytes()
}

// loadOpenAPI3 loads and validates (examples included) the served OpenAPI 3
// document.
func loadOpenAPI3(t *testing.T, h http.Handler) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(servedDocument(t, h, "/openapi3.json"))
	if err != nil {
		t.Fatalf("load /openapi3.json: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("/openapi3.json does not validate: %v", err)
	}
	return doc
}

// The served OpenAPI 3 document validates, and says what a client must
// know: every POST takes a required Idempotency-Key header, every
// operation answers errors as google.rpc.Status, and ErrorInfo.reason lists
// exactly the reasons of the error table.
func TestOpenAPI3Document(t *testing.T) {
	_, h, _ := stubGateway(t, false)
	doc := loadOpenAPI3(t, h)
	if doc.OpenAPI != "3.0.3" || len(doc.Paths.Map()) == 0 {
		t.Fatalf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths.Map()))
	}
	posts := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if method == http.MethodPost {
				posts++
				p := op.Parameters.GetByInAndName(openapi3.ParameterInHeader, "Idempotency-Key")
				if p == nil || !p.Required {
					t.Errorf("%s: no required Idempotency-Key header parameter: %+v", name, p)
				}
			}
			def := op.Responses.Default()
			if def == nil || def.Value == nil {
				t.Errorf("%s: no default (error) response", name)
				continue
			}
			mt := def.Value.Content.Get("application/json")
			if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Status" {
				t.Errorf("%s: the error response is not a google.rpc.Status: %+v", name, mt)
			}
			if op.Responses.Status(http.StatusOK) == nil {
				t.Errorf("%s: no 200 response", name)
			}
		}
	}
	if posts < 12 {
		t.Errorf("%d POST operations, want the 12 of the protos", posts)
	}
	reason := doc.Components.Schemas["ErrorInfo"].Value.Properties["reason"].Value
	if got, want := enumStrings(reason.Enum), tableReasons(); !slices.Equal(got, want) {
		t.Errorf("documented reasons differ from the error table's:\n only documented: %v\n only in the table: %v",
			missingFrom(got, want), missingFrom(want, got))
	}
}

// The Swagger 2.0 document keeps working: one document for both services,
// the header on every POST, the reasons in its ErrorInfo definition.
func TestSwagger2Document(t *testing.T) {
	_, h, _ := stubGateway(t, false)
	var doc struct {
		Swagger     string
		Paths       map[string]map[string]struct{ Parameters []map[string]any }
		Definitions map[string]struct {
			Properties map[string]struct{ Enum []any }
		}
	}
	if err := json.Unmarshal(servedDocument(t, h, "/openapi.json"), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.Paths["/v1/customers"] == nil || doc.Paths["/v1/customers/{customer_id}/holdings"] == nil {
		t.Fatalf("swagger %q, paths %d", doc.Swagger, len(doc.Paths))
	}
	for path, ops := range doc.Paths {
		post, ok := ops["post"]
		if !ok {
			continue
		}
		if !slices.ContainsFunc(post.Parameters, func(p map[string]any) bool {
			return p["name"] == "Idempotency-Key" && p["in"] == "header" && p["required"] == true
		}) {
			t.Errorf("POST %s: no required Idempotency-Key header", path)
		}
	}
	if got, want := enumStrings(doc.Definitions["rpcErrorInfo"].Properties["reason"].Enum), tableReasons(); !slices.Equal(got, want) {
		t.Errorf("swagger reasons %v, want %v", got, want)
	}
}

// The document describes the real answers: an order and an error the gateway
// sends validate against the operation's responses.
func TestOpenAPI3MatchesAnswers(t *testing.T) {
	_, h, _ := stubGateway(t, false)
	doc := loadOpenAPI3(t, h)
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	tok := stubToken(t, "7")
	for _, c := range []struct {
		body string
		code int
	}{
		{`{"amount":"12.50"}`, http.StatusOK},
		{`{"amount":"12.505"}`, http.StatusBadRequest},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/customers/7/topups", strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", tok) // stubToken includes the scheme
		req.Header.Set("Idempotency-Key", "doc-"+c.body)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.code {
			t.Fatalf("%s: %d, want %d: %s", c.body, w.Code, c.code, w.Body)
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatal(err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		in.Request.Body = io.NopCloser(strings.NewReader(c.body))
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s: the request does not fit the document: %v", c.body, err)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: w.Code, Header: w.Header(),
			Body: io.NopCloser(bytes.NewReader(w.Body.Bytes()))}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s: the answer does not fit the document: %v\n%s", c.body, err, w.Body)
		}
	}
}

// Every reason written in the gateway's code is documented, and every
// documented reason is written somewhere: a reason answered outside the
// table (a literal passed to ErrorInfo by hand) cannot escape the
// documents.
func TestDocumentedReasons(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})"`)
	written := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "apidoc.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllSubmatch(src, -1) {
			written[string(m[1])] = true
		}
	}
	documented := tableReasons()
	for r := range written {
		if !slices.Contains(documented, r) {
			t.Errorf("reason %s is answered but not documented", r)
		}
	}
	for _, r := range documented {
		if !written[r] {
			t.Errorf("reason %s is documented but answered nowhere", r)
		}
	}
}

// tableReasons is every reason of the error table, sorted, once each.
func tableReasons() []string {
	var out []string
	for _, m := range errorTable {
		out = append(out, m.reason)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func enumStrings(vs []any) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		s, _ := v.(string)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func missingFrom(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}
