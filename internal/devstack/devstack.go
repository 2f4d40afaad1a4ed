package devstack

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/gateway/server"
	"github.com/fundplatform/fund/internal/clock"
	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/owner"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	"github.com/fundplatform/fund/settlement"
	"github.com/fundplatform/fund/settlement/recon"
	"github.com/fundplatform/fund/settlement/schema"
)

// Defaults of Options.
const (
	TopicDefault = "ledger-events"
	// ShardsDefault is the stack's logical ledger shards: customers are
	// spread over them (accounts.ShardOf), as the platform runs them.
	ShardsDefault = 8
	// DatabasesDefault is how many databases of the private Postgres the
	// shards spread over (with their customers), as the platform runs
	// them: every role works over several.
	DatabasesDefault  = 2
	partitionsDefault = 8
	readyTimeout      = 2 * time.Minute
	stopTimeout       = time.Minute
	// leaseTTL of the shard lease; the owner retakes a released shard
	// within a third of it.
	leaseTTL = 3 * time.Second
	// ledgerConnsMax is each ledger database's pool at least: the
	// sequencers' commits and id lookups, the relay and the lease
	// renewals; more with many shards on a database (ledgerConns).
	ledgerConnsMax = 8
	// accountsConnsMax is the accounts store's pool by default.
	accountsConnsMax = 64
)

// Worker adds a role to the stack (settlement, reconciliation, load
// generators...). Start runs after the core (Postgres, broker, ledger
// owner, accounts) is up and before the gateway serves; it builds the role
// from the Stack's fields and returns it. The stack then runs Role.Run on
// a goroutine of its own until Stop, and serves Role.Settler and
// Role.Reconciler on the admin API.
type Worker struct {
	Name  string
	Start func(ctx context.Context, s *Stack) (Role, error)
}

// Role is what a Worker's Start returns; every field may be nil.
type Role struct {
	// Run runs until ctx ends (return nil then) or it fails; a failure
	// stops the whole stack (see Stack.Done).
	Run func(ctx context.Context) error
	// Settler and Reconciler answer the admin API's settlement and
	// reconciliation calls. At most one worker may give each.
	Settler    gateway.Settler
	Reconciler gateway.Reconciler
	// Close releases what Start opened; called after Run returned.
	Close func()
}

// Options configure Start. The zero value starts the core privately on
// loopback with free ports: no settlement or reconciliation unless Settle
// or Recon asks for them.
type Options struct {
	// DSN of an existing database; "" (and no DSNs) = a private Postgres
	// (internal/localpg, or the server FUND_PG_DSN names) with fresh
	// databases (Databases of them), removed on Stop, migrated by their
	// owner role and used as the service role, as in production (Stack.DSN
	// and Stack.DSNs are then the service role's). A DSN is one database:
	// Databases must then be 0 or 1.
	DSN string
	// DSNs are existing databases in shard-map order, instead of DSN (not
	// both), kept on Stop (the demo audits them after): Databases must
	// then be 0 or len(DSNs). Each role's store migrates its tables there
	// when it opens, as with DSN.
	DSNs []string
	// Shards is the number of logical ledger shards; 0 = ShardsDefault.
	// The ledger owner takes every one, and the customers are spread over
	// them (accounts.ShardOf): single-customer orders are one chain on the
	// customer's shard, transfers between customers of two shards the
	// saga (applied by the owner's consumer on the stack's broker).
	Shards int
	// Databases the shards are placed on (ledger.ShardMap), created in
	// the private Postgres; 0 = DatabasesDefault (at most one per shard),
	// or as many as DSN or DSNs give. The gateway role keeps each
	// customer's row and orders in its shard's database, the fund-wide
	// rows in the first; the settle role runs each shard's steps in its
	// shard's database, and the recon role records each event beside its
	// shard's journal.
	Databases int
	// PGSettings are postgresql.conf settings of the private Postgres.
	PGSettings map[string]string
	// Brokers of an existing Kafka cluster; nil = an in-process broker.
	Brokers []string
	Topic   string // of ledger events; "" = TopicDefault
	// HTTPAddr and GRPCAddr to listen on; "" = 127.0.0.1 on a free port.
	HTTPAddr, GRPCAddr string
	// JWTKey signs and verifies tokens; nil = 32 random bytes.
	JWTKey []byte
	// Gateway tunes the gateway (limits, timeouts); the stack fills in the
	// key, the service, the registry, the logger and the workers' Settler
	// and Reconciler.
	Gateway gateway.Config
	// Accounts tunes the service (fast-redemption cap, clock).
	Accounts accounts.Config
	// Sequencer is the template of the ledger shards' sequencers (batch
	// limits, FillWhileCommitting: on for every shard; unset = where
	// several shards share a database, as `fundd ledger --fill auto`);
	// Shard, Shards and Epoch are set by the owner's host, BatchObserver
	// by the owner (the ledger's metrics on Registry).
	Sequencer ledger.SequencerConfig
	// Breaker tunes the circuit breaker in front of the ledger shard.
	Breaker gateway.BreakerConfig
	// AccountsConnsMax is the accounts store's pool size; 0 = 64. Every
	// order holds a connection while its ledger batch commits.
	AccountsConnsMax int32
	// OrderWriters and OrderBatchMax tune the accounts store's batched
	// order placement (accounts/postgres.Config); 0 = its defaults.
	OrderWriters, OrderBatchMax int
	// Settle, when set, runs the settle role on demand (Stack.Settlement),
	// answering the admin API's settlement calls.
	Settle *SettleOptions
	// Recon, when set, runs the reconciliation role (Stack.Recon),
	// answering the admin API's reconciliation report.
	Recon *ReconOptions
	// Workers are started in order after the core and the Settle and
	// Recon roles.
	Workers []Worker
	Logger  *slog.Logger
	// Clock is the business clock every role reads (see Stack.Clock); nil
	// = the wall clock. A *clock.Test makes the stack a sandbox whose
	// admin API moves business time (clock:advance). It replaces
	// Accounts.Now and Sequencer.Now.
	Clock clock.Clock
}

// Stack is every role of the platform in one process. Its fields are set
// by Start and must not be changed.
type Stack struct {
	HTTPURL  string // http://127.0.0.1:port
	GRPCAddr string // 127.0.0.1:port
	// DSN is the first database: the fund-wide accounts rows, and the
	// ledger's shards (and their customers) that the map places there.
	DSN string
	// DSNs are the ledger databases in shard-map order (DSNs[0] == DSN).
	DSNs []string
	// Shards is the number of logical ledger shards the owner serves.
	Shards  int
	Brokers []string
	Topic   string
	JWTKey  []byte

	Postgres *localpg.Server // nil with Options.DSN or DSNs
	// Owner is the ledger owner role (ledger/owner, as `fundd ledger`
	// runs it) owning every shard through its leases, with its outbox
	// relay and the saga's consumer; a settlement run may take the shards
	// (fencing them) and give them back: the owner's host then takes them
	// again at new epochs and Ledger follows them to the new sequencers.
	Owner       *owner.Owner
	Host        *ledger.Host    // the owner's host
	LedgerStore *ledgerpg.Store // the owner's store of the first database (shard 0's)
	// Ledger is the in-process client of every shard, each behind the
	// gateway's circuit breaker, as the accounts service calls it.
	Ledger ledger.Client
	// AccountsStore is the accounts store of the first database;
	// AccountsShards the service's store over every database.
	AccountsStore  *accountspg.Store
	AccountsShards *accountspg.Sharded
	Accounts       *accounts.Service
	Gateway        *gateway.Gateway
	// Settlement is the settle role's runner (with Options.Settle).
	Settlement *settlement.Runner
	// Recon is the reconciliation worker (with Options.Recon).
	Recon *recon.Worker
	// Registry is served at /metrics; workers register their collectors
	// on it.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// Clock is the business clock (Options.Clock, or clock.Wall): the
	// accounts service (cut-off, trade and confirm dates, the
	// fast-redemption day, yesterday's income), the ledger owner (journal
	// timestamps and partitions), the settle role (the cut-off check, its
	// entries' timestamps) and reconciliation (the days it compares) all
	// read it. The journal must follow it: settlement takes a date's
	// holders at a cut in journal time and the journal is partitioned by
	// business date, so orders stamped with another clock than the one
	// that gave them their trade dates would fall on the wrong side of the
	// cut. Token expiry and the gateway's rate limits stay on real time.
	Clock clock.Clock

	api        *server.Server
	httpLn     net.Listener
	grpcLn     net.Listener
	ownerOnce  sync.Once
	ownerAsked atomic.Bool // set before the owner is stopped on purpose
	ownerErr   error
	closers    []func()             // in reverse order on Stop
	roles      []Role               // started workers
	cancels    []context.CancelFunc // ledger watch, workers, gateway: stopped in reverse
	wgs        []*sync.WaitGroup
	failOnce   sync.Once
	failErr    error
	done       chan struct{}
	stopOnce   sync.Once
	stopErr    error
}

// Start brings the stack up, each role assembled by its own package: the
// ledger owner (ledger/owner), the gateway (gateway/server, with the
// ledger in-process), and the settle and reconciliation roles
// (settlement/nightly, settlement/recon/worker) when asked. The caller
// must Stop it. On error everything started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	s := newStack(opts)
	opts.Accounts.Now, opts.Sequencer.Now = s.Clock.Now, s.Clock.Now
	if tc, ok := s.Clock.(gateway.TestClock); ok {
		opts.Gateway.TestClock = tc
	}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			_ = s.Stop(sctx)
		}
	}()
	// Keys and listeners first: cheap, and a taken port fails fast.
	if err := s.listen(opts); err != nil {
		return nil, err
	}
	if err := s.startPostgres(ctx, opts); err != nil {
		return nil, err
	}
	if err := s.startBroker(opts); err != nil {
		return nil, err
	}
	if err := s.startLedger(ctx, opts); err != nil {
		return nil, err
	}
	if err := s.openGateway(ctx, opts); err != nil {
		return nil, err
	}
	gcfg, err := s.startWorkers(ctx, opts)
	if err != nil {
		return nil, err
	}
	// The gateway, last: traffic comes only once everything behind it runs.
	if s.Gateway, err = s.api.Gateway(gcfg.Settler, gcfg.Reconciler); err != nil {
		return nil, err
	}
	s.run("gateway", func(ctx context.Context) error { return s.Gateway.Serve(ctx, s.httpLn, s.grpcLn) })
	if s.Shards > 1 {
		// What the gateway role's Serve runs beside the API: the stack
		// serves it on listeners of its own, so it runs the sweep itself.
		s.run("transfer sweep", func(ctx context.Context) error { s.api.SweepTransfers(ctx); return nil })
	}
	s.Logger.Info("dev stack up", "http", s.HTTPURL, "grpc", s.GRPCAddr, "ledger", s.Owner.Addr(),
		"brokers", s.Brokers, "topic", s.Topic)
	return s, nil
}

func newStack(opts Options) *Stack {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Stack{Topic: opts.Topic, Logger: logger, done: make(chan struct{}), Registry: prometheus.NewRegistry(),
		Clock: opts.Clock, Shards: cmp.Or(opts.Shards, ShardsDefault)}
	if s.Clock == nil {
		s.Clock = clock.Wall{}
	}
	if s.Topic == "" {
		s.Topic = TopicDefault
	}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// check refuses what the stack cannot run, before anything starts.
func (o Options) check() error {
	if o.DSN != "" && len(o.DSNs) > 0 {
		return errors.New("give DSN or DSNs, not both")
	}
	if o.DSN != "" && o.Databases > 1 {
		return fmt.Errorf("a DSN names one database: %d databases need the private Postgres (no DSN) or DSNs", o.Databases)
	}
	if len(o.DSNs) > 0 && o.Databases != 0 && o.Databases != len(o.DSNs) {
		return fmt.Errorf("%d DSNs for %d databases", len(o.DSNs), o.Databases)
	}
	shards, dbs := cmp.Or(o.Shards, ShardsDefault), o.databases()
	if _, err := ledger.NewShardMap(shards, dbs); err != nil {
		return fmt.Errorf("%d shards on %d databases: %w", shards, dbs, err)
	}
	return nil
}

// given are the existing databases the options name (DSN or DSNs), nil
// for the private Postgres.
func (o Options) given() []string {
	if o.DSN != "" {
		return []string{o.DSN}
	}
	return o.DSNs
}

// databases is how many databases the stack runs on: by default
// DatabasesDefault, or one per shard when there are fewer shards (as
// deploy/local does).
func (o Options) databases() int {
	if g := o.given(); len(g) > 0 {
		return len(g)
	}
	return cmp.Or(o.Databases, min(DatabasesDefault, cmp.Or(o.Shards, ShardsDefault)))
}

// listen makes the JWT key (unless given) and binds the gateway's
// listeners.
func (s *Stack) listen(opts Options) (err error) {
	s.JWTKey = opts.JWTKey
	if s.JWTKey == nil {
		s.JWTKey = make([]byte, auth.KeyLenMin)
		_, _ = rand.Read(s.JWTKey) // crypto/rand.Read never returns an error
	}
	if s.httpLn, err = listen(opts.HTTPAddr); err != nil {
		return err
	}
	s.closers = append(s.closers, func() { _ = s.httpLn.Close() })
	if s.grpcLn, err = listen(opts.GRPCAddr); err != nil {
		return err
	}
	s.closers = append(s.closers, func() { _ = s.grpcLn.Close() })
	s.HTTPURL = "http://" + s.httpLn.Addr().String()
	s.GRPCAddr = s.grpcLn.Addr().String()
	return nil
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln, nil
}

// startPostgres uses Options.DSN or DSNs, or starts a private Postgres
// with Options.Databases fresh databases that Stop drops.
func (s *Stack) startPostgres(ctx context.Context, opts Options) error {
	if given := opts.given(); len(given) > 0 {
		s.DSNs = slices.Clone(given)
		s.DSN = s.DSNs[0]
		return nil
	}
	srv, err := localpg.Start(ctx, localpg.Options{Settings: opts.PGSettings, Logger: s.Logger})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.Postgres = srv
	s.closers = append(s.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = srv.Stop(sctx)
	})
	base := "fund_dev_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var owners []string
	for i := range opts.databases() {
		name := base + "_" + strconv.Itoa(i+1)
		roles, err := srv.CreateDatabaseWithRoles(ctx, name)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		s.closers = append(s.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = srv.DropDatabase(sctx, name)
		})
		owners, s.DSNs = append(owners, roles.Owner), append(s.DSNs, roles.Service)
	}
	// As in production: the owner role migrates (fundd migrate) every
	// database, every role of the stack connects as the service role,
	// which may not rewrite the journal (docs/operations.md 1.3).
	if err := schema.Migrate(ctx, schema.Config{DSNs: owners, ServiceRole: localpg.ServiceRole}); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.DSN = s.DSNs[0]
	return nil
}

// startBroker uses Options.Brokers, or starts an in-process broker.
func (s *Stack) startBroker(opts Options) error {
	if s.Brokers = opts.Brokers; len(s.Brokers) > 0 {
		return nil
	}
	b, err := kafkabroker.Start(0, partitionsDefault, s.Topic)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, b.Close)
	s.Brokers = b.Addrs()
	return nil
}

// startLedger starts the ledger owner role for every shard (its gRPC
// server on a free loopback port, its relay to the stack's broker and the
// saga's consumer of second legs on it, its metrics on the stack's
// registry) and waits until every shard is loaded.
func (s *Stack) startLedger(ctx context.Context, opts Options) error {
	// As `fundd ledger` by default: sequencers fill the next batch while
	// one commits where several shards share a database (bigger batches
	// pay there), not on a database of one shard (latency-bound); on
	// everywhere when the template asks.
	fill := "auto"
	if opts.Sequencer.FillWhileCommitting {
		fill = "on"
	}
	o, err := owner.Start(ctx, owner.Config{
		DSNs:    s.DSNs,
		Brokers: s.Brokers,
		Topic:   s.Topic,
		// As `fundd ledger` runs it: transfers between customers of two
		// shards land their second leg through this consumer.
		XShardGroup: owner.XShardGroupDefault,
		Host: ledger.HostConfig{
			Owner:     fmt.Sprintf("dev-%d-%d", os.Getpid(), time.Now().UnixNano()),
			Shards:    s.Shards,
			LeaseTTL:  leaseTTL,
			Sequencer: opts.Sequencer,
		},
		Fill:     fill,
		ConnsMax: ledgerConns(s.Shards, len(s.DSNs)),
		Registry: s.Registry,
		Logger:   s.Logger,

		// As `fundd ledger` runs it: each order's row commits with its
		// entries (the accounts tables are in every database).
		Attachments: accountspg.OrderRowsWriter,
	})
	if err != nil {
		return fmt.Errorf("ledger owner: %w", err)
	}
	s.Owner, s.Host, s.LedgerStore = o, o.Host(), o.Databases().Store(0)
	s.closers = append(s.closers, func() { _ = s.stopOwner() })
	s.run("ledger", s.watchOwner)
	return s.waitLedger(ctx)
}

// ledgerConns is each ledger database's pool: ledger/postgres's two per
// shard it holds plus two, and at least ledgerConnsMax.
func ledgerConns(shards, databases int) int32 {
	perDB := (shards + databases - 1) / databases
	return int32(max(ledgerConnsMax, 2+2*perDB))
}

// watchOwner fails the stack when the owner role stops by itself (one of
// its parts failed), not when StopLedger or Stop stopped it.
func (s *Stack) watchOwner(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.Owner.Done():
	}
	if s.ownerAsked.Load() {
		<-ctx.Done()
		return nil
	}
	return s.stopOwner()
}

// stopOwner stops the owner role once; its host releases the lease.
func (s *Stack) stopOwner() error {
	s.ownerOnce.Do(func() {
		s.ownerAsked.Store(true)
		s.ownerErr = s.Owner.Stop()
	})
	return s.ownerErr
}

// openGateway opens the gateway role with the owner's shards in-process:
// the accounts store (each customer in its shard's database) and service, and
// the ledger, each shard behind its breaker.
func (s *Stack) openGateway(ctx context.Context, opts Options) (err error) {
	gcfg := opts.Gateway
	gcfg.Ready = append(slices.Clip(gcfg.Ready), s.ready)
	s.api, err = server.Open(ctx, server.Config{DSN: s.DSN, LedgerDSNs: s.DSNs, Ledger: s.Owner.Local,
		Shards: s.Shards, Gateway: gcfg,
		JWTKey: s.JWTKey, Breaker: opts.Breaker, Accounts: opts.Accounts,
		AccountsConnsMax: cmp.Or(opts.AccountsConnsMax, accountsConnsMax),
		OrderWriters:     opts.OrderWriters, OrderBatchMax: opts.OrderBatchMax, Registry: s.Registry, Logger: s.Logger})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.closers = append(s.closers, s.api.Close)
	s.Accounts, s.AccountsStore, s.AccountsShards = s.api.Accounts(), s.api.AccountsStore(), s.api.AccountsShards()
	s.Ledger = s.api.Ledger()
	return nil
}

// startWorkers starts the Settle and Recon roles and Options.Workers, in
// that order, and returns the gateway config with their Settler and
// Reconciler (at most one of each, counting Options.Gateway's).
func (s *Stack) startWorkers(ctx context.Context, opts Options) (gateway.Config, error) {
	gcfg := opts.Gateway
	var workers []Worker
	if opts.Settle != nil {
		workers = append(workers, settleWorker(*opts.Settle))
	}
	if opts.Recon != nil {
		workers = append(workers, reconWorker(*opts.Recon))
	}
	for _, w := range append(workers, opts.Workers...) {
		role, err := w.Start(ctx, s)
		if err != nil {
			return gcfg, fmt.Errorf("worker %s: %w", w.Name, err)
		}
		s.roles = append(s.roles, role)
		if role.Settler != nil {
			if gcfg.Settler != nil {
				return gcfg, fmt.Errorf("worker %s: a second settler", w.Name)
			}
			gcfg.Settler = role.Settler
		}
		if role.Reconciler != nil {
			if gcfg.Reconciler != nil {
				return gcfg, fmt.Errorf("worker %s: a second reconciler", w.Name)
			}
			gcfg.Reconciler = role.Reconciler
		}
		if role.Run != nil {
			s.run(w.Name, role.Run)
		}
	}
	return gcfg, nil
}

// ready is the stack's own /readyz check (the gateway role adds the
// database's): every ledger shard is owned and loaded here.
func (s *Stack) ready(context.Context) error {
	if shard, ok := s.unserved(); ok {
		return fmt.Errorf("ledger shard %d not owned and loaded", shard)
	}
	return nil
}

// unserved is the first shard the owner's host does not serve now.
func (s *Stack) unserved() (int, bool) {
	for shard := range s.Shards {
		if _, ok := s.Host.Sequencer(shard); !ok {
			return shard, true
		}
	}
	return 0, false
}

// run starts fn on a goroutine owned by the stack; Stop cancels its context
// (roles started later are stopped first) and waits for it. An error from
// fn while the stack runs fails the stack.
func (s *Stack) run(name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	s.cancels = append(s.cancels, cancel)
	s.wgs = append(s.wgs, &wg)
	go func() {
		defer wg.Done()
		err := fn(ctx)
		if err == nil && ctx.Err() == nil {
			err = errors.New("stopped by itself")
		}
		if err != nil && ctx.Err() == nil {
			s.Logger.Error("role failed", "role", name, "err", err)
			s.failOnce.Do(func() {
				s.failErr = fmt.Errorf("%s: %w", name, err)
				close(s.done)
			})
		}
	}()
}

// StopLedger stops the ledger owner while the rest runs on: failure
// injection for tests and demos (orders then fail fast with 503, and the
// circuit breaker opens). It returns the owner's failure, if any.
func (s *Stack) StopLedger() error { return s.stopOwner() }

// LedgerSequencer returns the sequencer serving shard 0 now; false while
// the shard is not owned (stopped, or taken by a settlement run).
func (s *Stack) LedgerSequencer() (*ledger.Sequencer, bool) { return s.Host.Sequencer(0) }

// LedgerSequencerOf is LedgerSequencer of any shard.
func (s *Stack) LedgerSequencerOf(shard int) (*ledger.Sequencer, bool) {
	return s.Host.Sequencer(shard)
}

// waitLedger waits until the owner's host owns and has loaded every shard.
func (s *Stack) waitLedger(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		shard, missing := s.unserved()
		if !missing {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ledger: shard %d not loaded after %s", shard, readyTimeout)
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.Owner.Done():
			t.Stop()
			return fmt.Errorf("ledger owner stopped: %w", s.stopOwner())
		case <-t.C:
		}
	}
}

// Done is closed when a role fails; Err then says which and why.
func (s *Stack) Done() <-chan struct{} { return s.done }

// Err is the first role failure, nil while every role runs.
func (s *Stack) Err() error {
	select {
	case <-s.done:
		return s.failErr
	default:
		return nil
	}
}

// Token mints a token for customer c (0 = none) with the admin scope when
// admin is set, valid for ttl.
func (s *Stack) Token(c int64, admin bool, ttl time.Duration) (string, error) {
	var cl auth.Claims
	if c != 0 {
		cl.Subject = strconv.FormatInt(c, 10)
	}
	if admin {
		cl.Scopes = []string{auth.ScopeAdmin}
	}
	return auth.Mint(s.JWTKey, cl, ttl, time.Now())
}

// Stop stops every role, the last started first: the gateway finishes its
// in-flight requests, then the workers stop, then the ledger owner (its
// relay, then its host, which releases the lease), the broker and
// Postgres. It returns the first role failure, if any. It may be called
// more than once.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		for i := len(s.cancels) - 1; i >= 0; i-- {
			s.cancels[i]()
			waited := make(chan struct{})
			go func() { s.wgs[i].Wait(); close(waited) }()
			select {
			case <-waited:
			case <-ctx.Done():
				s.Logger.Warn("stop: a role did not stop in time")
			}
		}
		for i := len(s.roles) - 1; i >= 0; i-- {
			if s.roles[i].Close != nil {
				s.roles[i].Close()
			}
		}
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
		s.stopErr = s.Err()
	})
	return s.stopErr
}
