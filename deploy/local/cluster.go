package local

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
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
	// ShardsDefault: customers are spread over 8 shards (accounts.ShardOf),
	// which the three owners share through their leases.
	ShardsDefault = 8
	// LedgerDatabasesDefault: the shard map spreads the shards, and with
	// them the customers and their orders, over two databases.
	LedgerDatabasesDefault = 2

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
// ledger owners, two gateways, a private Postgres, a broker process.
type Config struct {
	// Fundd is the fundd binary; "" = build this module's cmd/fundd with
	// `go build` into Dir (the module must be the current directory or
	// above it).
	Fundd string
	// FundBroker is the fundbroker binary (deploy/local/cmd/fundbroker);
	// "" = build it like Fundd. Not used with Brokers.
	FundBroker string
	// Dir holds the logs, the JWT key file and the built binary; "" = a
	// new temporary directory, removed by Stop.
	Dir string
	// Owners and Gateways are how many `fundd ledger` and `fundd gateway`
	// processes run [3, 2].
	Owners, Gateways int
	// Shards is the number of logical ledger shards [8]; LedgerDatabases
	// how many databases the shard map spreads them over [2, or Shards
	// when fewer; at most Shards].
	Shards, LedgerDatabases int
	// LeaseTTL of the shard leases [5s].
	LeaseTTL time.Duration
	// Brokers of an external Kafka; nil = a fundbroker process (a
	// Kafka-protocol broker in memory, Cluster.Broker).
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
	// AccountsDSN is the first ledger database, which holds the fund-wide
	// rows (yields, the calendar, the settlement runs); customers and
	// their orders live in every ledger database, each in its shard's
	// (accounts/postgres.Sharded), as fundd gateway keeps them.
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
	// Broker is the fundbroker process (HTTPAddr its control endpoint:
	// SetBrokerDown, BrokerDown); nil with an external Kafka.
	Broker *Process
	Front  *Front

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
	broker    string // the fundbroker binary
	log       *slog.Logger
	pg        *localpg.Server
	databases []string // created on pg, dropped by Stop
	dir       *ledgerpg.Databases
	removeDir bool
	client    *http.Client
	super     *supervisor
	// shardsMax is every owner's --shards-max, the added ones' too
	// (AddOwner); nextOwner and nextGateway number the next process of
	// each kind, so that a name is never used twice.
	shardsMax, nextOwner, nextGateway int

	// staleMu guards stale: by owner name, the epochs of the leases it
	// held when its process died. A restarted owner runs under the same
	// name, so its old lease counts as live only once it took the shard
	// again (a new epoch); see WaitOwned.
	staleMu sync.Mutex
	stale   map[string]map[int]int64
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
	if err := c.build(ctx, cfg); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	c.IncomeDir, c.FileDir = filepath.Join(c.Dir, "income"), filepath.Join(c.Dir, "custodian")
	for _, d := range []string{c.IncomeDir, c.FileDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The key in hex: fundd reads the key file without its trailing line
	// end, which cut a raw random key ending in \r or \n below the
	// minimum length (1 start in 64 failed so).
	raw := make([]byte, auth.KeyLenMin)
	_, _ = rand.Read(raw) // crypto/rand.Read never returns an error
	c.JWTKey = []byte(hex.EncodeToString(raw))
	c.KeyFile = filepath.Join(c.Dir, "jwt.key")
	if err := os.WriteFile(c.KeyFile, c.JWTKey, 0o600); err != nil {
		return nil, err
	}

	if err := c.startPostgres(ctx, cfg); err != nil {
		return nil, err
	}
	if len(c.Brokers) == 0 {
		if c.Broker, err = c.startBroker(c.broker); err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		if err := c.Broker.waitReady(ctx, c.client); err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
	}
	c.log.Info("cluster: postgres and kafka up", "ledger_databases", len(c.LedgerDSNs), "brokers", c.Brokers)

	// Owners first: a gateway is ready only when every shard has one.
	c.nextOwner, c.nextGateway = cfg.Owners, cfg.Gateways // the numbers AddOwner and AddGateway use next
	if err := c.startOwners(ctx, cfg); err != nil {
		return nil, err
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
	c.supervise()
	c.log.Info("cluster: up", "url", c.URL, "gateways", urls)
	return c, nil
}

// startOwners starts cfg.Owners `fundd ledger` processes and waits until
// each answers /readyz.
func (c *Cluster) startOwners(ctx context.Context, cfg Config) error {
	if cfg.Owners > 1 && cfg.Shards > 1 {
		// Room for the survivors to take a dead owner's shards, as in
		// deploy/k8s: shards-max x (owners - 1) >= shards. The owners
		// spread the shards evenly among themselves (hand-offs), so the
		// cap only bounds them; owners added later (AddOwner) get the
		// same, which leaves room for any spread over at least as many
		// owners as started, and RemoveOwner keeps enough to hold them.
		c.shardsMax = (cfg.Shards + cfg.Owners - 2) / (cfg.Owners - 1)
	}
	for i := range cfg.Owners {
		p, err := c.startOwner(i, c.shardsMax)
		if err != nil {
			return err
		}
		c.Owners = append(c.Owners, p)
	}
	for _, p := range c.Owners {
		if err := p.waitReady(ctx, c.client); err != nil {
			return err
		}
	}
	return nil
}

// build builds the binaries Config does not name, in one `go build`.
func (c *Cluster) build(ctx context.Context, cfg Config) error {
	c.fundd = cfg.Fundd
	broker := cfg.FundBroker
	var pkgs []string
	if c.fundd == "" {
		pkgs = append(pkgs, funddPkg)
		c.fundd = filepath.Join(c.Dir, "fundd")
	}
	if broker == "" && len(cfg.Brokers) == 0 {
		pkgs = append(pkgs, fundbrokerPkg)
		broker = filepath.Join(c.Dir, "fundbroker")
	}
	c.broker = broker
	if len(pkgs) > 0 {
		if err := goBuild(ctx, c.Dir, pkgs...); err != nil {
			return err
		}
	}
	return nil
}

// supervise starts the supervisor over every role process and the broker:
// from now on a process that ends without Stop is restarted. Processes
// that die while Start waits for them fail Start instead.
func (c *Cluster) supervise() {
	c.super = newSupervisor(c.log, c.noteDeath)
	for _, p := range c.processes() {
		c.super.watch(p)
	}
}

// processes returns every child process: owners, gateways, recon, settle
// and the broker.
func (c *Cluster) processes() []*Process {
	ps := append(append([]*Process{}, c.Owners...), c.Gateways...)
	for _, p := range []*Process{c.Recon, c.Settle, c.Broker} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// Restarts returns how many times the supervisor restarted each process,
// by name (ledger-0, gateway-1, settle, recon, broker, ...); a process
// never restarted is absent.
func (c *Cluster) Restarts() map[string]int {
	if c.super == nil {
		return map[string]int{}
	}
	return c.super.counts()
}

// noteDeath remembers the epochs of the leases a dead owner still holds in
// the lease tables, before the supervisor restarts it under the same name.
func (c *Cluster) noteDeath(p *Process) {
	if c.dir == nil || !strings.HasPrefix(p.Name, "ledger-") {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		// WaitOwned may then take the restarted owner's old lease for a
		// live one until it expires or is taken again; said, not hidden.
		c.log.Warn("cluster: leases of a dead owner not read", "owner", p.Name, "err", err)
	}
	c.staleMu.Lock()
	defer c.staleMu.Unlock()
	for _, o := range owners {
		if o.Owner != p.Name {
			continue
		}
		if c.stale == nil {
			c.stale = map[string]map[int]int64{}
		}
		if c.stale[p.Name] == nil {
			c.stale[p.Name] = map[int]int64{}
		}
		c.stale[p.Name][o.Shard] = o.Epoch
	}
}

// isStale reports whether lease o was held by a process of o.Owner's name
// that has died since.
func (c *Cluster) isStale(o ledger.ShardOwner) bool {
	c.staleMu.Lock()
	defer c.staleMu.Unlock()
	epoch, ok := c.stale[o.Owner][o.Shard]
	return ok && o.Epoch <= epoch
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
		cfg.LedgerDatabases = min(LedgerDatabasesDefault, max(cfg.Shards, 1))
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

// The commands the cluster runs.
const (
	funddPkg      = "github.com/fundplatform/fund/cmd/fundd"
	fundbrokerPkg = "github.com/fundplatform/fund/deploy/local/cmd/fundbroker"
)

// BuildFundd builds this module's cmd/fundd into dir and returns its path.
func BuildFundd(ctx context.Context, dir string) (string, error) {
	return filepath.Join(dir, "fundd"), goBuild(ctx, dir, funddPkg)
}

// BuildBroker builds deploy/local/cmd/fundbroker into dir and returns its
// path.
func BuildBroker(ctx context.Context, dir string) (string, error) {
	return filepath.Join(dir, "fundbroker"), goBuild(ctx, dir, fundbrokerPkg)
}

// goBuild builds the commands pkgs into dir (one go build: they share
// their dependencies' compilation).
func goBuild(ctx context.Context, dir string, pkgs ...string) error {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, b)
	}
	return nil
}

// startPostgres starts the private server (or uses FUND_PG_DSN's) and
// creates the ledger databases; each holds its shards' customers and
// orders too, and the first the fund-wide rows (`fundd migrate` puts every
// table in each).
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

// startGateway starts `fundd gateway` number i: --dsn (FUND_PG_DSN) the
// first ledger database, as fundd gateway requires when the customers are
// spread over several (--ledger-dsn).
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

// startSettle starts `fundd settle` over every ledger database (FUND_PG_DSN,
// in shard-map order: each shard's steps run in its own database), which
// settles each business date once it has ended and its income file is in
// IncomeDir; a run takes every shard from the owners for its duration
// (--take-shards) and they take them back after it.
func (c *Cluster) startSettle() (*Process, error) {
	tick := settleTick
	if !c.TestClockStart.IsZero() {
		tick = settleTickTestClock
	}
	// Its /metrics on a free port: a fixed default would collide with
	// another cluster on the same machine (two test packages at once).
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &Process{Name: "settle", HTTPAddr: httpAddr, LogPath: filepath.Join(c.Dir, "settle.log"), Args: []string{
		"settle",
		"--http-addr=" + httpAddr,
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
	env := []string{localpg.EnvDSN + "=" + strings.Join(c.LedgerDSNs, ",")}
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

// ShardsOf returns the shards whose live lease names owner p, in order.
func (c *Cluster) ShardsOf(ctx context.Context, p *Process) ([]int, error) {
	owners, err := c.ShardOwners(ctx)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, o := range owners {
		if o.Owner == p.Name {
			out = append(out, o.Shard)
		}
	}
	slices.Sort(out)
	return out, nil
}

// WaitOwned waits until every shard has a live owner that is running, or
// ctx ends. A lease of an owner that died and was restarted under its name
// counts only once the new process took the shard again (a new epoch).
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
				if !running[o.Owner] || c.isStale(o) {
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

// Stop stops the front, the supervisor, the gateways, the settlement and
// reconciliation workers, the owners (cleanly: they release their leases),
// the broker and the databases, in that order, and removes a temporary
// directory. It returns every error joined.
func (c *Cluster) Stop(ctx context.Context) error {
	var errs []error
	if c.Front != nil {
		c.Front.Stop()
	}
	// No restarts from here on: what Stop ends stays down.
	if c.super != nil {
		c.super.stop()
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
	// The broker last: the owners' relays and fundd settle publish until
	// they stop.
	var broker []*Process
	if c.Broker != nil {
		broker = append(broker, c.Broker)
	}
	for _, group := range [][]*Process{c.Gateways, workers, c.Owners, broker} {
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
