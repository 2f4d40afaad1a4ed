package proctest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestTailBufferKeepsTheTail(t *testing.T) {
	w := &TailBuffer{Max: 8}
	for i := range 20 {
		fmt.Fprintf(w, "%d", i%10)
	}
	if got := w.String(); got != "23456789" {
		t.Fatalf("tail %q, want the last 8 bytes 23456789", got)
	}
}

func TestGetAndFreeAddr(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, "short and stout")
	}))
	defer srv.Close()
	if code, body := Get(t, srv.URL); code != http.StatusTeapot || body != "short and stout" {
		t.Fatalf("got %d %q", code, body)
	}
	if a := FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("free address %q is not loopback", a)
	}
}
