package devstack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/gateway"
	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/kafka"
	"github.com/fundplatform/fund/ledger/outbox"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
)

// Defaults of Options.
const (
	TopicDefault      = "ledger-events"
	partitionsDefault = 8
	readyTimeout      = 2 * time.Minute
	stopTimeout       = time.Minute
	// The ledger target's name in breaker metrics: the one shard owner.
	ledgerTarget = "shard-0"
	// leaseTTL of the shard lease; the host retakes a released shard
	// within a third of it.
	leaseTTL = 3 * time.Second
)

// Worker adds a role to the stack (settlement, reconciliation, load
// generators...). Start runs after the core (Postgres, broker, ledger,
// relay, accounts) is up and before the gateway starts; it builds the role
// from the Stack's fields and returns it. The stack then runs Role.Run on a
// goroutine of its own until Stop, and serves Role.Settler and
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

// Options configure Start. The zero value starts everything privately on
// loopback with free ports.
type Options struct {
	// DSN of an existing database; "" = a private Postgres (deploy/localpg,
	// or the server FUND_PG_DSN names) with a fresh database, removed on Stop.
	DSN string
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
	// Sequencer is the template of the ledger shard's sequencer (batch
	// limits, BatchObserver for ledger metrics); Shard, Shards and Epoch
	// are set by the host.
	Sequencer ledger.SequencerConfig
	// Breaker tunes the circuit breaker in front of the ledger shard.
	Breaker gateway.BreakerConfig
	// AccountsConnsMax is the accounts store's pool size; 0 = 64. Every
	// order holds a connection while its ledger batch commits.
	AccountsConnsMax int32
	// OrderWriters and OrderBatchMax tune the accounts store's batched
	// order placement (accounts/postgres.Config); 0 = its defaults.
	OrderWriters, OrderBatchMax int
	// Workers are started in order after the core.
	Workers []Worker
	Logger  *slog.Logger
}

// Stack is every role of the platform in one process. Its fields are set
// by Start and must not be changed.
type Stack struct {
	HTTPURL  string // http://127.0.0.1:port
	GRPCAddr string // 127.0.0.1:port
	DSN      string
	Brokers  []string
	Topic    string
	JWTKey   []byte

	Postgres    *localpg.Server // nil with Options.DSN
	LedgerStore *ledgerpg.Store
	// Host owns ledger shard 0 through its lease, as `fundd ledger` does,
	// so that a settlement run may take the shard (fencing it) and give it
	// back: the host then takes it again at a new epoch and Ledger routes
	// to the new sequencer.
	Host          *ledger.Host
	Ledger        ledger.Client // the sequencer behind the circuit breaker
	AccountsStore *accountspg.Store
	Accounts      *accounts.Service
	Gateway       *gateway.Gateway
	Relay         *outbox.Relay
	// Registry is served at /metrics; workers register their collectors
	// on it.
	Registry *prometheus.Registry
	Logger   *slog.Logger

	broker     *kafkabroker.Broker
	stopLedger context.CancelFunc
	ledgerDone chan struct{}
	pub        *kafka.Publisher
	closers    []func()             // in reverse order on Stop
	roles      []Role               // started workers
	cancels    []context.CancelFunc // gateway, workers, relay: stopped in this order
	wgs        []*sync.WaitGroup
	failOnce   sync.Once
	failErr    error
	done       chan struct{}
	stopOnce   sync.Once
	stopErr    error
}

// Start brings the stack up; the caller must Stop it. On error everything
// started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Stack{Topic: opts.Topic, Logger: logger, done: make(chan struct{}), Registry: prometheus.NewRegistry()}
	if s.Topic == "" {
		s.Topic = TopicDefault
	}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			_ = s.Stop(sctx)
		}
	}()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Keys and listeners first: cheap, and a taken port fails fast.
	s.JWTKey = opts.JWTKey
	if s.JWTKey == nil {
		s.JWTKey = make([]byte, auth.KeyLenMin)
		_, _ = rand.Read(s.JWTKey) // crypto/rand.Read never returns an error
	}
	httpLn, err := listen(opts.HTTPAddr)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = httpLn.Close() })
	grpcLn, err := listen(opts.GRPCAddr)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { _ = grpcLn.Close() })
	s.HTTPURL = "http://" + httpLn.Addr().String()
	s.GRPCAddr = grpcLn.Addr().String()

	// Postgres.
	s.DSN = opts.DSN
	if s.DSN == "" {
		srv, err := localpg.Start(ctx, localpg.Options{Settings: opts.PGSettings, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		s.Postgres = srv
		s.closers = append(s.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = srv.Stop(sctx)
		})
		name := "fund_dev_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if s.DSN, err = srv.CreateDatabase(ctx, name); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		s.closers = append(s.closers, func() {
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = srv.DropDatabase(sctx, name)
		})
	}

	// Kafka.
	s.Brokers = opts.Brokers
	if len(s.Brokers) == 0 {
		b, err := kafkabroker.Start(0, partitionsDefault, s.Topic)
		if err != nil {
			return nil, err
		}
		s.broker = b
		s.closers = append(s.closers, b.Close)
		s.Brokers = b.Addrs()
	}

	// Ledger shard 0, its outbox relay, and the accounts service behind the
	// gateway's circuit breaker.
	if s.LedgerStore, err = ledgerpg.Open(ctx, ledgerpg.Config{DSN: s.DSN, ConnsMax: 8}); err != nil {
		return nil, fmt.Errorf("ledger store: %w", err)
	}
	s.closers = append(s.closers, s.LedgerStore.Close)
	s.Host = ledger.NewHost(ledger.HostConfig{
		Owner:     fmt.Sprintf("dev-%d-%d", os.Getpid(), time.Now().UnixNano()),
		Shards:    1,
		LeaseTTL:  leaseTTL,
		Sequencer: opts.Sequencer,
	}, s.LedgerStore, s.LedgerStore, logger.With("role", "ledger"))
	hctx, stopHost := context.WithCancel(context.Background())
	s.stopLedger, s.ledgerDone = stopHost, make(chan struct{})
	go func() {
		defer close(s.ledgerDone)
		_ = s.Host.Run(hctx) // returns nil once stopped, after releasing its leases
	}()
	s.closers = append(s.closers, func() { stopHost(); <-s.ledgerDone })
	if err := s.waitLedger(ctx); err != nil {
		return nil, err
	}
	s.pub = kafka.NewPublisher(s.Brokers, s.Topic)
	s.closers = append(s.closers, func() { _ = s.pub.Close() })
	s.Relay = outbox.NewRelay(outbox.RelayConfig{Shards: []int{0}}, s.LedgerStore, s.pub, logger)
	s.run("relay", s.Relay.Run)

	metrics := gateway.NewMetrics(s.Registry)
	s.Ledger = gateway.NewBreakerClient(ledgerTarget, hostClient{s.Host}, opts.Breaker, metrics.BreakerChanged)
	metrics.BreakerState.WithLabelValues(ledgerTarget).Set(0)
	connsMax := opts.AccountsConnsMax
	if connsMax == 0 {
		connsMax = 64
	}
	if s.AccountsStore, err = accountspg.Open(ctx, accountspg.Config{DSN: s.DSN, ConnsMax: connsMax,
		OrderWriters: opts.OrderWriters, OrderBatchMax: opts.OrderBatchMax}); err != nil {
		return nil, fmt.Errorf("accounts store: %w", err)
	}
	s.closers = append(s.closers, s.AccountsStore.Close)
	if s.Accounts, err = accounts.NewService(ctx, opts.Accounts, s.AccountsStore, s.Ledger, logger.With("role", "accounts")); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}

	// Workers.
	gcfg := opts.Gateway
	for _, w := range opts.Workers {
		role, err := w.Start(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", w.Name, err)
		}
		s.roles = append(s.roles, role)
		if role.Settler != nil {
			if gcfg.Settler != nil {
				return nil, fmt.Errorf("worker %s: a second settler", w.Name)
			}
			gcfg.Settler = role.Settler
		}
		if role.Reconciler != nil {
			if gcfg.Reconciler != nil {
				return nil, fmt.Errorf("worker %s: a second reconciler", w.Name)
			}
			gcfg.Reconciler = role.Reconciler
		}
		if role.Run != nil {
			s.run(w.Name, role.Run)
		}
	}

	// The gateway, last: traffic comes only once everything behind it runs.
	gcfg.JWTKey, gcfg.Accounts, gcfg.Registry, gcfg.Metrics = s.JWTKey, s.Accounts, s.Registry, metrics
	gcfg.Logger = logger
	gcfg.Ready = append(gcfg.Ready, s.ready)
	if s.Gateway, err = gateway.New(gcfg); err != nil {
		return nil, err
	}
	s.run("gateway", func(ctx context.Context) error { return s.Gateway.Serve(ctx, httpLn, grpcLn) })
	logger.Info("dev stack up", "http", s.HTTPURL, "grpc", s.GRPCAddr, "brokers", s.Brokers, "topic", s.Topic)
	return s, nil
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

// ready is the stack's /readyz check: the ledger shard serves and the
// database answers.
func (s *Stack) ready(ctx context.Context) error {
	if _, ok := s.Host.Sequencer(0); !ok {
		return errors.New("ledger shard 0 not owned and loaded")
	}
	if err := s.AccountsStore.Pool().Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
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

// StopLedger stops the ledger shard while the rest runs on: failure
// injection for tests and demos (orders then fail fast with 503, and the
// circuit breaker opens).
func (s *Stack) StopLedger() error {
	s.stopLedger()
	<-s.ledgerDone
	return nil
}

// LedgerSequencer returns the sequencer serving shard 0 now; false while
// the shard is not owned (stopped, or taken by a settlement run).
func (s *Stack) LedgerSequencer() (*ledger.Sequencer, bool) { return s.Host.Sequencer(0) }

// waitLedger waits until the host owns and has loaded shard 0.
func (s *Stack) waitLedger(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if _, ok := s.Host.Sequencer(0); ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ledger: shard 0 not loaded after %s", readyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// hostClient is a ledger.Client on whatever sequencer serves shard 0 now.
type hostClient struct{ h *ledger.Host }

func (c hostClient) client() (ledger.Client, error) {
	if cl, ok := c.h.Client(0); ok {
		return cl, nil
	}
	return nil, ledger.ErrNoOwner
}

func (c hostClient) CreateAccounts(ctx context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.CreateAccounts(ctx, as)
}

func (c hostClient) CreateTransfers(ctx context.Context, ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.CreateTransfers(ctx, ts)
}

func (c hostClient) CloseAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.AccountResult, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.CloseAccounts(ctx, ids)
}

func (c hostClient) LookupAccounts(ctx context.Context, ids []ledger.AccountID) ([]ledger.Account, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	return cl.LookupAccounts(ctx, ids)
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
// in-flight requests, then the workers stop, then the relay, the ledger,
// the broker and Postgres. It returns the first role failure, if any. It
// may be called more than once.
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
