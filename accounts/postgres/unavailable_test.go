package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/internal/localpg/pgtest"
)

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{pgx.ErrNoRows, false},
		{accounts.ErrCustomerNotFound, false},
		{&pgconn.PgError{Code: "23505", ConstraintName: "orders_request"}, false}, // a unique violation: the call's own
		{&pgconn.PgError{Code: "22P02"}, false},                                   // bad input syntax: a bug
		{context.DeadlineExceeded, false},                                         // the caller's deadline: 504 at the edge
		{fmt.Errorf("read: %w", context.Canceled), false},
		{&pgconn.PgError{Code: "57P01"}, true}, // terminating connection due to administrator command
		{&pgconn.PgError{Code: "57P03"}, true}, // the database system is starting up
		{&pgconn.PgError{Code: "08006"}, true}, // connection failure
		{&pgconn.PgError{Code: "53300"}, true}, // too many connections
		{&pgconn.PgError{Code: "40001"}, true}, // serialization failure
		{fmt.Errorf("history: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{postgres.ErrClosed, true},
	} {
		if got := postgres.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestStoreUnavailable: with the database refusing connections and every
// session of it terminated (what a restart looks like from the pool),
// every kind of call fails with accounts.ErrUnavailable, not with a bare
// driver error; once the database is back the same calls succeed.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Holidays(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.Database
	admin, err := pgx.Connect(ctx, os.Getenv(localpg.EnvDSN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	allow := func(on bool) {
		t.Helper()
		if _, err := admin.Exec(context.Background(), fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, pgx.Identifier{name}.Sanitize(), on)); err != nil {
			t.Fatal(err)
		}
	}
	allow(false)
	t.Cleanup(func() { allow(true) })
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name); err != nil {
		t.Fatal(err)
	}

	calls := map[string]func(context.Context) error{
		"Customer": func(ctx context.Context) error { _, err := st.Customer(ctx, 1); return err },
		"Order":    func(ctx context.Context) error { _, err := st.Order(ctx, 1, "r1"); return err },
		"History": func(ctx context.Context) error {
			_, err := st.History(ctx, accounts.HistoryQuery{CustomerID: 1}, 0, 10)
			return err
		},
		"Holidays": func(ctx context.Context) error { _, err := st.Holidays(ctx); return err },
		"CreateCustomer": func(ctx context.Context) error {
			_, _, err := st.CreateCustomer(ctx, accounts.Customer{RequestID: "c1", Name: "A", CreatedAt: time.Now()},
				func(context.Context, accounts.Customer) error { return nil })
			return err
		},
		"PlaceOrder": func(ctx context.Context) error {
			o := &accounts.Order{CustomerID: 1, RequestID: "r1", Kind: accounts.KindTopUp, Amount: 100}
			_, _, err := st.PlaceOrder(ctx, o, []accounts.CustomerID{1},
				func(context.Context, []accounts.Customer) error { return nil })
			return err
		},
	}
	for name, call := range calls {
		err := call(ctx)
		if !errors.Is(err, accounts.ErrUnavailable) {
			t.Errorf("%s with the database away: %v, want accounts.ErrUnavailable", name, err)
		}
	}

	allow(true)
	if _, err := st.Holidays(ctx); err != nil {
		t.Fatalf("the database is back, the store is not: %v", err)
	}
	if _, err := st.Customer(ctx, 1); !errors.Is(err, accounts.ErrCustomerNotFound) {
		t.Fatalf("customer 1 on an empty database: %v", err)
	}
}
