package local

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
	"github.com/fundplatform/fund/internal/kafkabroker"
	"github.com/fundplatform/fund/internal/localpg"
	"github.com/fundplatform/fund/ledger"
	ledgerpg "github.com/fundplatform/fund/ledger/postgres"
	settlekafka "github.com/fundplatform/fund/settlement/kafka"
)

// Defaults of Config.
const (
	OwnersDefault     = 3
	GatewaysDefault   = 2
	LeaseTTLDefault   = 5 * time.Second
	TopicDefault      = "ledger-events"
	partitionsDefault = 8
	// ShardsDefault is 1 because the accounts service keeps a customer's
	// and the fund's accounts on one shard today (see fundd gateway
	// --shards); the owners still share it through the lease, two of
	// them standing by.
	ShardsDefault = 1

	startTimeoutDefault = 3 * time.Minute
	buildTimeout        = 10 * time.Minute
	migrateTimeout      = 2 * time.Minute // fundd migrate on fresh databases takes about a second
	dbStopTimeout       = time.Minute
	ownersMax           = 16
	settleTick          = 10 * time.Second // how often fundd settle looks for a date to settle
	// settleTickTestClock: on a test clock a date is due the moment the
	// clock is moved past it, and a rehearsal waits for its settlement.
	settleTickTestClock = time.Second
	gatewaysMax         = 16
)

// Config configures Start. The zero value is the cluster: three
// ledger owners, two gateways, a private Postgres, an in-process broker.
type Config struct {
	// Fundd is the fundd binary; "" = build this module's cmd/fundd with
	// `go build` into Dir (the module must be the current directory or
	// above it).
	Fundd string
	// Dir holds the logs, the JWT key file and the built binary; "" = a
	// new temporary directory, removed by Stop.
	Dir string
	// Owners and Gateways are how many `fundd ledger` and `fundd gateway`
	// processes run [3, 2].
	Owners, Gateways int
	// Shards is the number of logical ledger shards [1]; LedgerDatabases
	// how many databases the shard map spreads them over [1, at most
	// Shards].
	Shards, LedgerDatabases int
	// LeaseTTL of the shard leases [5s].
	LeaseTTL time.Duration
	// Brokers of an external Kafka; nil = an in-process broker.
	Brokers []string
	Topic   string // of ledger events [ledger-events]
	// PGSettings are postgresql.conf settings of the private Postgres.
	PGSettings map[string]string
	// FrontAddr is where the round-robin front listens ["" = a free
	// loopback port].
	FrontAddr string
	// StartTimeout bounds Start after the binary is built [3m].
	StartTimeout time.Duration
	Logger       *slog.Logger
	// TestClock runs every process on the shared test clock (fundd
	// --test-clock, internal/clock/pgclock) instead of the wall clock, so
	// that a rehearsal moves business time through a gateway's admin API
	// (POST /v1/admin/clock:advance) and settles its setup day at once.
	// Never in production.
	TestClock bool
	// TestClockStart is where the test clock starts [the wall clock's
	// now]; fundd settle settles from its business date on.
	TestClockStart time.Time
}

// Cluster is a running multi-process cluster. Its fields are set by Start.
type Cluster struct {
	URL string // the round-robin front: the platform's REST API
	// AccountsDSN holds customers and orders; it is the first ledger
	// database too, because fundd settle reads the ledger and the accounts
	// tables from one database.
	AccountsDSN string
	LedgerDSNs  []string // the ledger databases in shard-map order
	// The DSNs above connect as ServiceRole, as every fundd process of the
	// cluster does; OwnerDSNs are the same databases as the owner role,
	// which ran the migrations (fundd migrate) and owns every table.
	OwnerDSNs   []string
	ServiceRole string
	Brokers     []string
	Topic       string
	JWTKey      []byte
	KeyFile     string // JWTKey in a file (fundctl --jwt-key-file)
	Dir         string
	Shards      int
	LeaseTTL    time.Duration

	Owners   []*Process
	Gateways []*Process
	Recon    *Process // fundd recon: the reconciliation worker
	Settle   *Process // fundd settle: the nightly settlement scheduler
	Front    *Front

	// IncomeDir is fundd settle's --income-dir: write a file named after a
	// business date (YYYY-MM-DD) holding "income_per_10k=0.6543" or
	// "income=123.45" and the date is settled once it has ended.
	IncomeDir string
	// FileDir is where the custodian settlement files are written.
	FileDir string
	// SettlementTopic carries settlement events.
	SettlementTopic string
	// TestClockStart is where the shared test clock started, zero without
	// Config.TestClock.
	TestClockStart time.Time

	fundd     string
	log       *slog.Logger
	pg        *localpg.Server
	databases []string // created on pg, dropped by Stop
	broker    *kafkabroker.Broker
	dir       *ledgerpg.Databases
	removeDir bool
	client    *http.Client
}

// Start builds (if asked) and starts everything, and returns once every
// shard has an owner and every gateway answers /readyz. On error,
// everything started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	cfg = withDefaults(cfg)
	if err := validate(cfg); err != nil {
		return nil, err
	}
	c := &Cluster{Brokers: cfg.Brokers, Topic: cfg.Topic, SettlementTopic: settlekafka.TopicDefault,
		Shards: cfg.Shards, LeaseTTL: cfg.LeaseTTL, log: cfg.Logger, client: &http.Client{Timeout: probeTimeout}}
	if cfg.TestClock {
		// One start for every process: the first to open the clock
		// starts it, and fundd settle settles from its date.
		c.TestClockStart = cmp.Or(cfg.TestClockStart, time.Now()).Round(0).Truncate(time.Second)
	}
	defer func() {
		if err != nil {
			_ = c.Stop(context.WithoutCancel(ctx))
		}
	}()
	if c.Dir = cfg.Dir; c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "fundcluster-"); err != nil {
			return nil, err
		}
		c.removeDir = true
	} else if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	if c.fundd = cfg.Fundd; c.fundd == "" {
		if c.fundd, err = BuildFundd(ctx, c.Dir); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	c.IncomeDir, c.FileDir = filepath.Join(c.Dir, "income"), filepath.Join(c.Dir, "custodian")
	for _, d := range []string{c.IncomeDir, c.FileDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c.JWTKey = make([]byte, auth.KeyLenMin)
	_, _ = rand.Read(c.JWTKey) // crypto/rand.Read never returns an error
	c.KeyFile = filepath.Join(c.Dir, "jwt.key")
	if err := os.WriteFile(c.KeyFile, c.JWTKey, 0o600); err != nil {
		return nil, err
	}

	if err := c.startPostgres(ctx, cfg); err != nil {
		return nil, err
	}
	if len(c.Brokers) == 0 {
		if c.broker, err = kafkabroker.Start(0, partitionsDefault, c.Topic, c.SettlementTopic); err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		c.Brokers = c.broker.Addrs()
	}
	c.log.Info("cluster: postgres and kafka up", "ledger_databases", len(c.LedgerDSNs), "brokers", c.Brokers)

	// Owners first: a gateway is ready only when every shard has one.
	shardsMax := 0
	if cfg.Owners > 1 && cfg.Shards > 1 {
		// Room for the survivors to take a dead owner's shards, as in
		// deploy/k8s: shards-max x (owners - 1) >= shards.
		shardsMax = (cfg.Shards + cfg.Owners - 2) / (cfg.Owners - 1)
	}
	for i := range cfg.Owners {
		p, err := c.startOwner(i, shardsMax)
		if err != nil {
			return nil, err
		}
		c.Owners = append(c.Owners, p)
	}
	for _, p := range c.Owners {
		if err := p.waitReady(ctx, c.client); err != nil {
			return nil, err
		}
	}
	if c.dir, err = ledgerpg.OpenDatabases(ctx, ledgerpg.DatabasesConfig{DSNs: c.LedgerDSNs, Shards: c.Shards, ConnsMax: 2}); err != nil {
		return nil, fmt.Errorf("lease directory: %w", err)
	}
	if err := c.WaitOwned(ctx); err != nil {
		return nil, err
	}
	c.log.Info("cluster: every shard owned", "owners", len(c.Owners))

	var urls []string
	for i := range cfg.Gateways {
		p, err := c.startGateway(i)
		if err != nil {
			return nil, err
		}
		c.Gateways = append(c.Gateways, p)
		urls = append(urls, "http://"+p.HTTPAddr)
	}
	for _, p := range c.Gateways {
		if err := p.waitReady(ctx, c.client); err != nil {
			return nil, err
		}
	}
	if c.Recon, err = c.startRecon(); err != nil {
		return nil, err
	}
	if err := c.Recon.waitReady(ctx, c.client); err != nil {
		return nil, err
	}
	if c.Settle, err = c.startSettle(); err != nil {
		return nil, err
	}
	if c.Front, err = StartFront(cfg.FrontAddr, urls); err != nil {
		return nil, fmt.Errorf("front: %w", err)
	}
	c.URL = c.Front.URL
	c.log.Info("cluster: up", "url", c.URL, "gateways", urls)
	return c, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Owners == 0 {
		cfg.Owners = OwnersDefault
	}
	if cfg.Gateways == 0 {
		cfg.Gateways = GatewaysDefault
	}
	if cfg.Shards == 0 {
		cfg.Shards = ShardsDefault
	}
	if cfg.LedgerDatabases == 0 {
		cfg.LedgerDatabases = 1
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = LeaseTTLDefault
	}
	if cfg.Topic == "" {
		cfg.Topic = TopicDefault
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = startTimeoutDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

func validate(cfg Config) error {
	switch {
	case cfg.Owners < 1 || cfg.Owners > ownersMax:
		return fmt.Errorf("local: %d ledger owners: want 1..%d", cfg.Owners, ownersMax)
	case cfg.Gateways < 1 || cfg.Gateways > gatewaysMax:
		return fmt.Errorf("local: %d gateways: want 1..%d", cfg.Gateways, gatewaysMax)
	case cfg.LedgerDatabases < 1 || cfg.LedgerDatabases > cfg.Shards:
		return fmt.Errorf("local: %d ledger databases for %d shards: want 1..shards", cfg.LedgerDatabases, cfg.Shards)
	case cfg.LeaseTTL < 300*time.Millisecond:
		return fmt.Errorf("local: lease TTL %s is too short to renew", cfg.LeaseTTL)
	}
	return nil
}

// BuildFundd builds this module's cmd/fundd into dir and returns its path.
func BuildFundd(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	out := filepath.Join(dir, "fundd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/fundplatform/fund/cmd/fundd")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build fundd: %w\n%s", err, b)
	}
	return out, nil
}

// startPostgres starts the private server (or uses FUND_PG_DSN's) and
// creates the ledger databases, the first of which also holds the accounts
// (and the reconciliation and settlement tables).
func (c *Cluster) startPostgres(ctx context.Context, cfg Config) error {
	srv, err := localpg.Start(ctx, localpg.Options{Settings: cfg.PGSettings, Logger: c.log})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	c.pg = srv
	prefix := "fundcluster_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range cfg.LedgerDatabases {
		name := prefix + "_" + strconv.Itoa(i)
		roles, err := srv.CreateDatabaseWithRoles(ctx, name)
		if err != nil {
			return err
		}
		c.databases = append(c.databases, name)
		c.OwnerDSNs = append(c.OwnerDSNs, roles.Owner)
		c.LedgerDSNs = append(c.LedgerDSNs, roles.Service)
		c.ServiceRole = roles.ServiceRole
	}
	c.AccountsDSN = c.LedgerDSNs[0]
	return c.migrate(ctx)
}

// migrate runs `fundd migrate` as the owner role, as the Kubernetes
// migration Job does, before any service starts: the services then connect
// as the service role, which may not alter the schema or rewrite history.
func (c *Cluster) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	logPath := filepath.Join(c.Dir, "migrate.log")
	cmd := exec.CommandContext(ctx, c.fundd, "migrate", "--dsn="+strings.Join(c.OwnerDSNs, ","),
		"--service-role="+c.ServiceRole)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if werr := os.WriteFile(logPath, out, 0o600); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("fundd migrate: %w\n%s", err, out)
	}
	return nil
}

// startOwner starts `fundd ledger` number i, with the flags deploy/k8s
// gives it; the databases reach it through FUND_PG_DSN, not its arguments.
func (c *Cluster) startOwner(i, shardsMax int) (*Process, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	name := "ledger-" + strconv.Itoa(i)
	p := &Process{Name: name, HTTPAddr: httpAddr, LogPath: filepath.Join(c.Dir, name+".log"), Args: []string{
		"ledger",
		"--owner=" + name,
		"--shards=" + strconv.Itoa(c.Shards),
		"--shards-max=" + strconv.Itoa(shardsMax),
		"--lease-ttl=" + c.LeaseTTL.String(),
		"--listen=127.0.0.1:0", // the lease advertises the bound port
		"--http-addr=" + httpAddr,
		"--kafka-brokers=" + strings.Join(c.Brokers, ","),
		"--topic=" + c.Topic,
	}}
	p.Args = append(p.Args, c.testClockArgs()...)
	env := []string{localpg.EnvDSN + "=" + strings.Join(c.LedgerDSNs, ",")}
	return p, p.start(c.fundd, env)
}

// testClockArgs are the flags that put a process on the shared test clock
// (none without one).
func (c *Cluster) testClockArgs() []string {
	if c.TestClockStart.IsZero() {
		return nil
	}
	return []string{"--test-clock", "--test-clock-start=" + c.TestClockStart.Format(time.RFC3339)}
}

// startGateway starts `fundd gateway` number i.
func (c *Cluster) startGateway(i int) (*Process, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	name := "gateway-" + strconv.Itoa(i)
	p := &Process{Name: name, HTTPAddr: httpAddr, LogPath: filepath.Join(c.Dir, name+".log"), Args: []string{
		"gateway",
		"--http=" + httpAddr,
		"--grpc=" + grpcAddr,
		"--shards=" + strconv.Itoa(c.Shards),
		"--jwt-key-file=" + c.KeyFile,
		// The private server's roles have a fixed local-only password
		// (localpg), so the DSN on a command line gives nothing away.
		"--ledger-dsn=" + strings.Join(c.LedgerDSNs, ","),
	}}
	p.Args = append(p.Args, c.testClockArgs()...)
	env := []string{localpg.EnvDSN + "=" + c.AccountsDSN}
	return p, p.start(c.fundd, env)
}

// startRecon starts `fundd recon`, a reconciliation worker in the
// consumer group of the ledger's events.
func (c *Cluster) startRecon() (*Process, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: "recon", HTTPAddr: httpAddr, LogPath: filepath.Join(c.Dir, "recon.log"), Args: []string{
		"recon",
		"--shards=" + strconv.Itoa(c.Shards),
		"--kafka-brokers=" + strings.Join(c.Brokers, ","),
		"--topic=" + c.Topic,
		"--group=fund-recon",
		"--http-addr=" + httpAddr,
	}}
	p.Args = append(p.Args, c.testClockArgs()...)
	env := []string{localpg.EnvDSN + "=" + strings.Join(c.LedgerDSNs, ",")}
	return p, p.start(c.fundd, env)
}

// startSettle starts `fundd settle`, which settles each business date once
// it has ended and its income file is in IncomeDir; a run takes every
// shard from the owners for its duration (--take-shards) and they take
// them back after it.
func (c *Cluster) startSettle() (*Process, error) {
	tick := settleTick
	if !c.TestClockStart.IsZero() {
		tick = settleTickTestClock
	}
	p := &Process{Name: "settle", LogPath: filepath.Join(c.Dir, "settle.log"), Args: []string{
		"settle",
		"--shards=" + strconv.Itoa(c.Shards),
		"--income-dir=" + c.IncomeDir,
		"--file-dir=" + c.FileDir,
		"--take-shards",
		"--kafka=" + strings.Join(c.Brokers, ","),
		"--topic=" + c.SettlementTopic,
		"--tick=" + tick.String(),
	}}
	if !c.TestClockStart.IsZero() {
		// From the test clock's first day (not a walk back from
		// yesterday to the first run, every tick).
		p.Args = append(p.Args, c.testClockArgs()...)
		p.Args = append(p.Args, "--from="+c.TestClockStart.In(ledger.BusinessZone()).Format(time.DateOnly))
	}
	env := []string{localpg.EnvDSN + "=" + c.AccountsDSN}
	return p, p.start(c.fundd, env)
}

// ShardOwners returns each shard's owner as the lease tables say.
func (c *Cluster) ShardOwners(ctx context.Context) ([]ledger.ShardOwner, error) {
	return c.dir.ShardOwners(ctx)
}

// ErrNoOwner is returned by OwnerOf for a shard nobody owns right now.
var ErrNoOwner = errors.New("local: shard has no live owner")

// OwnerOf returns the owner process of shard.
func (c *Cluster) OwnerOf(ctx context.Context, shard int) (*Process, error) {
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range owners {
		if o.Shard != shard {
			continue
		}
		for _, p := range c.Owners {
			if p.Name == o.Owner {
				return p, nil
			}
		}
		if o.Owner != "" {
			return nil, fmt.Errorf("local: shard %d is owned by %q, not a process of this cluster", shard, o.Owner)
		}
	}
	return nil, fmt.Errorf("%w: shard %d", ErrNoOwner, shard)
}

// WaitOwned waits until every shard has a live owner that is running, or
// ctx ends.
func (c *Cluster) WaitOwned(ctx context.Context) error {
	running := map[string]bool{}
	for {
		for _, p := range c.Owners {
			running[p.Name] = p.Running()
		}
		owners, err := c.ShardOwners(ctx)
		if err == nil {
			missing := 0
			for _, o := range owners {
				if !running[o.Owner] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: waiting for every shard to have an owner: %w (last error %v)", ctx.Err(), err)
		case <-time.After(probeInterval):
		}
	}
}

// Stop stops the front, the gateways, the settlement and reconciliation
// workers, the owners (cleanly: they release their leases), the broker and
// the databases, in that order, and removes a temporary directory. It
// returns every error joined.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	if c.Front != nil {
		c.Front.Stop()
	}
	// Gateways first (no new orders), then the workers, then the owners;
	// each group stops in parallel, so one slow process costs one grace
	// period, not one per process.
	var workers []*Process
	for _, p := range []*Process{c.Settle, c.Recon} {
		if p != nil {
			workers = append(workers, p)
		}
	}
	for _, group := range [][]*Process{c.Gateways, workers, c.Owners} {
		groupErrs := make([]error, len(group))
		var wg sync.WaitGroup
		for i, p := range group {
			wg.Add(1)
			go func() {
				defer wg.Done()
				groupErrs[i] = p.Stop(ctx)
			}()
		}
		wg.Wait()
		errs = append(errs, groupErrs...)
	}
	if c.dir != nil {
		c.dir.Close()
	}
	if c.broker != nil {
		c.broker.Close()
	}
	if c.pg != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbStopTimeout)
		for _, name := range c.databases {
			if err := c.pg.DropDatabase(sctx, name); err != nil {
				errs = append(errs, err)
			}
		}
		if err := c.pg.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if c.removeDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
