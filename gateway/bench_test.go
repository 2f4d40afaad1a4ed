package gateway_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/internal/devstack"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

// BenchmarkRESTPath measures what the gateway itself costs per request,
// in-process versus through a loopback gRPC connection: a GET of a customer
// (one primary-key read) and a subscription refused for its amount (no
// database at all), over real HTTP on loopback. Back of the envelope: HTTP
// parsing and writing, protojson, a JWT check and the metrics take some
// tens of microseconds of CPU; the loopback hop adds a protobuf round trip
// and an HTTP/2 exchange, another few tens.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRESTPath(b *testing.B) {
	for _, mode := range []struct {
		name     string
		loopback bool
	}{{"in-process", false}, {"loopback", true}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			st, err := devstack.Start(ctx, devstack.Options{DSN: pgtest.NewDatabase(b),
				Gateway: gateway.Config{RESTViaLoopback: mode.loopback, RatePerCustomer: 1e9, RateBurst: 1 << 30}})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Stop(ctx)
			c, err := st.Accounts.OpenCustomer(ctx, "bench", "Bench")
			if err != nil {
				b.Fatal(err)
			}
			tok, _ := st.Token(int64(c.ID), false, time.Hour)
			tr := &http.Transport{MaxIdleConnsPerHost: 256}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			base := st.HTTPURL + "/v1/customers/" + strconv.FormatInt(int64(c.ID), 10)
			do := func(method, url, body string, want int) {
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, _ := http.NewRequest(method, url, rd)
				req.Header.Set("Authorization", "Bearer "+tok)
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Idempotency-Key", "k")
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					b.Fatalf("status %d, want %d", resp.StatusCode, want)
				}
			}
			for _, p := range []struct {
				name, method, url, body string
				want                    int
			}{
				{"get-customer", "GET", base, "", 200},
				{"refused-subscribe", "POST", base + "/subscriptions", `{"amount":"0.001"}`, 400},
			} {
				b.Run(p.name, func(b *testing.B) {
					b.SetParallelism(8)
					start, cpu0 := time.Now(), cpuTime()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							do(p.method, p.url, p.body, p.want)
						}
					})
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
					// CPU per request of this process (server, client and the
					// stack's Go side; not Postgres): robust to a busy machine.
					b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
				})
			}
		})
	}
}
