package proctest

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"testing"
)

// TailBuffer keeps the last Max bytes written to it: a child process's log,
// bounded however long the test runs.
type TailBuffer struct {
	Max int

	mu sync.Mutex
	b  []byte
}

func (w *TailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.Max; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

func (w *TailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Get fetches url and returns the status and body; a transport error fails
// the test.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Start starts cmd, killing and reaping it when t ends; its stderr's tail
// is logged under name if t failed.
func Start(t testing.TB, cmd *exec.Cmd, name string) {
	t.Helper()
	// The tail is enough and keeps a chatty child from growing memory
	// without bound.
	logs := &TailBuffer{Max: 64 << 10}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr (tail):\n%s", name, logs.String())
		}
	})
}
