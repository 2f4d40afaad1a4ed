// Command fundbroker runs the in-process Kafka-protocol broker
// (internal/kafkabroker, franz-go's kfake) as a process of its own, so that
// the local cluster's broker can fail alone: be killed and restarted at the
// same address, or made unreachable for a while and brought back with its
// data.
//
//	fundbroker --addr 127.0.0.1:9092 --http-addr 127.0.0.1:9093 --partitions 8 --topics ledger-events,settlement-events
//
// Its HTTP port serves
//
//	GET  /readyz  200 once the broker listens
//	POST /down    an outage as clients see it: every connection is closed on its next request, data kept
//	POST /up      the end of the outage
//	GET  /state   {"down": true|false}
//
// It runs until SIGTERM or SIGINT. The broker keeps its data in memory: a
// restarted fundbroker starts with empty topics and no consumer offsets
// (docs/operations.md, 6.2). For tests and rehearsals only; production
// runs a real Kafka cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fundplatform/fund/internal/kafkabroker"
)

const (
	partitionsMax   = 1024
	shutdownTimeout = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fundbroker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var (
		addr, httpAddr, topics string
		partitions             int
	)
	fs := flag.NewFlagSet("fundbroker", flag.ContinueOnError)
	fs.StringVar(&addr, "addr", "127.0.0.1:9092", "the broker's address: kfake listens on loopback, so the host must be 127.0.0.1; a fixed port lets a restarted broker come back where its clients look")
	fs.StringVar(&httpAddr, "http-addr", "127.0.0.1:9093", "readiness and outage control (/readyz, /down, /up, /state)")
	fs.IntVar(&partitions, "partitions", 8, "partitions of each topic")
	fs.StringVar(&topics, "topics", "ledger-events", "topics to create, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 || host != "127.0.0.1" {
		return fmt.Errorf("--addr %q: want 127.0.0.1:port with a fixed port", addr)
	}
	if partitions < 1 || partitions > partitionsMax {
		return fmt.Errorf("--partitions %d: want 1..%d", partitions, partitionsMax)
	}
	names := strings.Split(topics, ",")
	b, err := kafkabroker.Start(port, partitions, names...)
	if err != nil {
		return err
	}
	defer b.Close()

	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	srv := &http.Server{Handler: control(b), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "fundbroker: kafka on %s (topics %s, %d partitions each), control on http://%s\n",
		strings.Join(b.Addrs(), ","), topics, partitions, ln.Addr())

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("control server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-served // http.ErrServerClosed after Shutdown
	fmt.Fprintln(os.Stderr, "fundbroker: stopped (its data is gone)")
	return nil
}

// control serves readiness and the simulated outage.
func control(b *kafkabroker.Broker) http.Handler {
	var down atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok") // the broker listened before this server started
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, _ *http.Request) {
		if !down.Swap(true) {
			b.Down()
			fmt.Fprintln(os.Stderr, "fundbroker: down (clients' connections are closed; data kept)")
		}
		writeState(w, true)
	})
	mux.HandleFunc("POST /up", func(w http.ResponseWriter, _ *http.Request) {
		if down.Swap(false) {
			b.Up()
			fmt.Fprintln(os.Stderr, "fundbroker: up")
		}
		writeState(w, false)
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		writeState(w, down.Load())
	})
	return mux
}

func writeState(w http.ResponseWriter, down bool) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, "{\"down\":%t}\n", down)
}
