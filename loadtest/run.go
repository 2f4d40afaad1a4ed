package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fundplatform/fund/accounts"
)

// Defaults and limits of a run.
const (
	MaxInFlightDefault    = 2000
	MaxInFlightMax        = 100_000
	RequestTimeoutDefault = 5 * time.Second
	TimeoutRetriesDefault = 2
	TimeoutRetriesMax     = 10
	ZipfSkewDefault       = 1.1
	HotMerchantsDefault   = 3
	// zipfOffset is v in P(k) ∝ (v+k)^-s: it flattens the very top so that
	// the busiest customer sends about 1 % of the traffic (with s = 1.1 and
	// 100,000 customers), as a busy app user would, not a tenth of it.
	zipfOffset        = 20
	hotMerchantShare  = 0.8 // of payments go to the hot merchants
	RecordsMax        = 5_000_000
	progressInterval  = time.Second
	dispatchSleepMin  = 200 * time.Microsecond
	requestTimeoutMax = 2 * time.Minute
)

// Config of one run.
type Config struct {
	Target  string // base URL of the gateway, e.g. http://127.0.0.1:8080
	Profile Profile
	Mix     Mix
	// Customers are the ids requests act for (Zipf-skewed: a few are very
	// busy); at least 2 when transfers are in the mix.
	Customers []int64
	// Merchants receive payments; the first HotMerchants get most of them.
	Merchants    []int64
	HotMerchants int     // 0 = HotMerchantsDefault
	ZipfSkew     float64 // s > 1 of the customer choice; 0 = ZipfSkewDefault
	// Tokens gives each customer's bearer token.
	Tokens interface {
		Customer(int64) (string, error)
	}
	MaxInFlight    int           // requests out at once; beyond it they are dropped and counted; 0 = default
	RequestTimeout time.Duration // per attempt; 0 = default
	// TimeoutRetries is how many times a request whose attempt timed out
	// (or whose connection broke) is sent again with the same
	// Idempotency-Key, as the app does; 0 = default, -1 = none.
	TimeoutRetries int
	// Seed draws the arrivals and the requests; 0 = from the clock. A part
	// of a split run draws from Part.Seed(Seed).
	Seed  uint64
	RunID string // prefix of every Idempotency-Key (with the part's); "" = from the seed
	// Arrivals: ArrivalsPoisson ("" too) or ArrivalsEven.
	Arrivals Arrivals
	// Part of a run split over several generator processes: it sends
	// Part.Share(Profile), under keys of Part.RunID(RunID), for Customers,
	// which must be the part's (SetupConfig.Part). The zero Part is all.
	Part Part
	// Progress gets one line a second; nil = none.
	Progress io.Writer

	// dispatched, for tests, is called once the last request has been
	// sent or dropped, before waiting for the answers.
	dispatched func()
}

// Record is one order request as the generator saw it: what the audit
// compares with the books.
type Record struct {
	Op           Op      `json:"op"`
	Customer     int64   `json:"customer"`
	Counterparty int64   `json:"counterparty,omitempty"` // recipient or merchant
	Amount       int64   `json:"amount"`                 // fen
	Key          string  `json:"key"`
	Outcome      Outcome `json:"outcome"`
	Code         string  `json:"code"`
	Status       string  `json:"status,omitempty"`
	// Reason says which component answered an error and why: the
	// ErrorInfo reason of the answer ("SHARD_FAILING_OVER"), else its
	// message (a proxy's "no gateway available"); "" for other outcomes.
	Reason string `json:"reason,omitempty"`
	// Attempts is how many times it was sent (1 + retries after timeouts);
	// 0 when it was dropped unsent.
	Attempts int `json:"attempts"`
	// Due is when it was to be sent (the run's start plus its arrival),
	// for callers in the same process that look at a stretch of the run
	// (how the orders sent during a failover fared). Not in part files:
	// the generators' clocks need not agree.
	Due time.Time `json:"-"`
	// Ended is when its final answer came (Due for one dropped unsent), so
	// that a stretch of the run counts the orders still out in it too.
	// In-process only, like Due.
	Ended time.Time `json:"-"`
}

// Result of a run.
type Result struct {
	RunID    string   `json:"run_id"`
	Target   string   `json:"target"`
	Profile  Profile  `json:"profile"`
	Mix      string   `json:"mix"`
	Seed     uint64   `json:"seed"`
	Arrivals Arrivals `json:"arrivals"`
	// Part is which part of a split run this is; a merged result has
	// Parts, the number of parts merged, and Part zero.
	Part            Part             `json:"part"`
	Parts           int              `json:"parts,omitempty"`
	Customers       int              `json:"customers"`
	Merchants       int              `json:"merchants"`
	MaxInFlight     int              `json:"max_in_flight"`
	StartedAt       time.Time        `json:"started_at"`
	DurationSeconds float64          `json:"duration_seconds"`
	Totals          Counts           `json:"totals"`
	Orders          Counts           `json:"orders"` // order requests only (no holdings)
	Latency         Latency          `json:"latency"`
	ByOp            map[Op]OpResult  `json:"by_op"`
	Codes           map[string]int64 `json:"codes"`
	Timeline        []Second         `json:"timeline"`
	Distribution    []Bucket         `json:"distribution"`
	// RecordsTruncated is set when more than RecordsMax orders were sent:
	// the audit then covers only the first RecordsMax.
	RecordsTruncated bool     `json:"records_truncated,omitempty"`
	Records          []Record `json:"-"`
	// Audit is filled in by the audit, when one runs.
	Audit *Audit `json:"audit,omitempty"`
	// Notes are lines for the reader from whoever ran the test (the demo
	// records its settlement here).
	Notes []string `json:"notes,omitempty"`
	// Histograms are the run's HDR histograms, encoded, so that the
	// results of a split run's parts merge exactly (Merge).
	Histograms *Histograms `json:"histograms,omitempty"`
	// Markers are stretches of the run its time charts show (the faults of
	// a rehearsal), and Windows how the orders fared in each; both are
	// filled in by whoever ran the test.
	Markers []Marker `json:"markers,omitempty"`
	Windows []Window `json:"windows,omitempty"`
}

// OpResult is one operation's counts and latency.
type OpResult struct {
	Counts
	Latency Latency `json:"latency"`
	// RefusedBy counts the Rejected orders by the rule that refused them
	// (INSUFFICIENT_FUNDS, FAST_REDEEM_LIMIT, ...).
	RefusedBy map[string]int64 `json:"refused_by,omitempty"`
}

// Audit is the outcome of checking a run against the books (package
// loadtest/audit fills it in).
type Audit struct {
	Checked      int64 `json:"checked"`      // order records compared with the books
	Acknowledged int64 `json:"acknowledged"` // accepted + rejected
	Applied      int64 `json:"applied"`      // acknowledged orders found exactly once with their amounts
	Lost         int64 `json:"lost"`         // acknowledged, missing or wrong in the books
	// Settled counts subscriptions confirmed and standard redemptions paid
	// by settlement, each exactly once with the order's amount.
	Settled     int64 `json:"settled"`
	Duplicated  int64 `json:"duplicated"`   // an entry of one of the run's orders in the journal more than once
	HalfApplied int64 `json:"half_applied"` // part of a chain, or an order row without its entries (or the reverse)
	// Wrong counts orders found with other amounts or accounts than sent,
	// refused ones whose money moved, and unsent ones in the books.
	Wrong int64 `json:"wrong"`
	// UnackedApplied counts orders the client never saw acknowledged
	// (failed after retries) that did apply, whole: allowed, the app would
	// learn it from GET /v1/orders.
	UnackedApplied int64 `json:"unacked_applied"`
	// Orphans, found from the databases rather than the records, over the
	// business dates of the run's entries and the order rows stored since
	// its first: journal entries of customer orders without an order row
	// (so missing from the customer's history), and order rows whose money
	// should have moved without their first entry. Both must be 0.
	OrphansChecked    bool  `json:"orphans_checked"`
	EntriesScanned    int64 `json:"entries_scanned"`
	RowsScanned       int64 `json:"rows_scanned"`
	EntriesWithoutRow int64 `json:"entries_without_row"`
	RowsWithoutEntry  int64 `json:"rows_without_entry"`
	// Sagas are the cross-shard transfers (leg 1 in the run's dates), by
	// how the journal ended them; SagasOpen (neither leg 2 nor the
	// compensation after the wait) and SagasWrong (both, or an order row
	// saying otherwise) must be 0. SagasUnresolved counts ended sagas whose
	// order row still says pending (it is resolved when read).
	SagasCompleted  int64 `json:"sagas_completed"`
	SagasRefunded   int64 `json:"sagas_refunded"`
	SagasOpen       int64 `json:"sagas_open"`
	SagasWrong      int64 `json:"sagas_wrong"`
	SagasUnresolved int64 `json:"sagas_unresolved"`
	// InTransitNet is, per asset, the posted balance summed over every
	// in-transit account of every shard: 0 when no saga is in flight.
	InTransitNet   map[string]int64 `json:"in_transit_net"`
	ShardCount     int              `json:"shard_count"`
	LedgerVerified bool             `json:"ledger_verified"`
	Shards         []int            `json:"shards"`
	Recon          string           `json:"recon,omitempty"` // what reconciliation said, or why it could not
	ReconRan       bool             `json:"recon_ran"`
	ReconBreaks    int64            `json:"recon_breaks"`
	Problems       []string         `json:"problems,omitempty"` // the first few, for a person
	OK             bool             `json:"ok"`
}

// request is one scheduled request, fully drawn before it is sent so that
// a seed replays the same run.
type request struct {
	op           Op
	customer     int64
	counterparty int64
	amount       int64
	key          string
	at           time.Duration
}

// Run drives the target with cfg's profile and returns what it saw. It
// returns when the profile is over and every request has an answer (each
// is bounded by RequestTimeout × (TimeoutRetries+1)), or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	u, err := CheckTarget(cfg.Target, true)
	if err != nil {
		return nil, err
	}
	client := newAPI(u.String(), cfg.MaxInFlight)
	defer client.close()

	secondsMax := int(cfg.Profile.Duration()/time.Second) + 2 + int(cfg.RequestTimeout*time.Duration(cfg.TimeoutRetries+1)/time.Second)
	st := newStats(secondsMax)
	res := &Result{
		RunID: cfg.RunID, Target: cfg.Target, Profile: cfg.Profile, Mix: cfg.Mix.String(), Seed: cfg.Seed,
		Arrivals: cfg.Arrivals, Part: cfg.Part, Customers: len(cfg.Customers), Merchants: len(cfg.Merchants),
		MaxInFlight: cfg.MaxInFlight, StartedAt: time.Now().UTC(),
	}
	var recMu sync.Mutex
	record := func(r Record) {
		recMu.Lock()
		defer recMu.Unlock()
		if len(res.Records) >= RecordsMax {
			res.RecordsTruncated = true
			return
		}
		res.Records = append(res.Records, r)
	}

	gen := newGenerator(cfg)
	sched := NewArrivalSchedule(cfg.Part.Share(cfg.Profile), cfg.Arrivals, cfg.Part.Seed(cfg.Seed))
	sem := make(chan struct{}, cfg.MaxInFlight)
	var wg sync.WaitGroup
	start := time.Now()

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			progress(cfg.Progress, st, start, progressDone)
		}()
	}

	// The dispatcher: sends each request at its time, whatever is still
	// out. It only waits for the clock, never for an answer.
dispatch:
	for {
		at, ok := sched.Next()
		if !ok {
			break
		}
		req := gen.next(at)
		if d := time.Until(start.Add(at)); d > dispatchSleepMin {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				break dispatch
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		sec := int(at / time.Second)
		select {
		case sem <- struct{}{}:
		default:
			st.scheduled(sec, req.op, true)
			if req.op.IsOrder() {
				r := req.record(Dropped, "", "")
				r.Due = start.Add(req.at)
				r.Ended = r.Due
				record(r)
			}
			continue
		}
		st.scheduled(sec, req.op, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			due := start.Add(req.at)
			out, code, status, reason, retries := send(ctx, client, cfg, req)
			done := time.Now()
			st.finished(int(done.Sub(start)/time.Second), req.op, out, code, reason, done.Sub(due), retries)
			if req.op.IsOrder() {
				r := req.record(out, code, status)
				r.Attempts, r.Due, r.Ended = retries+1, due, done
				if out == Failed {
					r.Reason = reason
				}
				record(r)
			}
		}()
	}
	if cfg.dispatched != nil {
		cfg.dispatched()
	}
	wg.Wait()
	close(progressDone)
	progressWG.Wait()

	res.DurationSeconds = time.Since(start).Seconds()
	st.fill(res)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("run cut short: %w", err)
	}
	return res, nil
}

func (r request) record(o Outcome, code, status string) Record {
	return Record{Op: r.op, Customer: r.customer, Counterparty: r.counterparty, Amount: r.amount, Key: r.key,
		Outcome: o, Code: code, Status: status}
}

func (cfg *Config) defaults() error {
	if err := cfg.Profile.Validate(); err != nil {
		return err
	}
	if cfg.Mix == nil {
		cfg.Mix = DefaultMix()
	}
	if err := cfg.Mix.Validate(); err != nil {
		return err
	}
	if len(cfg.Customers) == 0 {
		return errors.New("no customers")
	}
	if cfg.Mix[OpTransfer] > 0 && len(cfg.Customers) < 2 {
		return errors.New("transfers need at least 2 customers")
	}
	if cfg.Mix[OpPay] > 0 && len(cfg.Merchants) == 0 {
		return errors.New("payments need at least one merchant")
	}
	if cfg.Tokens == nil {
		return errors.New("no token source")
	}
	if cfg.HotMerchants == 0 {
		cfg.HotMerchants = HotMerchantsDefault
	}
	cfg.HotMerchants = min(cfg.HotMerchants, len(cfg.Merchants))
	if cfg.ZipfSkew == 0 {
		cfg.ZipfSkew = ZipfSkewDefault
	}
	if cfg.ZipfSkew <= 1 {
		return fmt.Errorf("zipf skew %v: want > 1", cfg.ZipfSkew)
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = MaxInFlightDefault
	}
	if cfg.MaxInFlight < 1 || cfg.MaxInFlight > MaxInFlightMax {
		return fmt.Errorf("max in flight %d: want 1..%d", cfg.MaxInFlight, MaxInFlightMax)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = RequestTimeoutDefault
	}
	if cfg.RequestTimeout < 0 || cfg.RequestTimeout > requestTimeoutMax {
		return fmt.Errorf("request timeout %s: want up to %s", cfg.RequestTimeout, requestTimeoutMax)
	}
	switch {
	case cfg.TimeoutRetries == 0:
		cfg.TimeoutRetries = TimeoutRetriesDefault
	case cfg.TimeoutRetries < 0:
		cfg.TimeoutRetries = 0
	case cfg.TimeoutRetries > TimeoutRetriesMax:
		return fmt.Errorf("timeout retries %d: at most %d", cfg.TimeoutRetries, TimeoutRetriesMax)
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if cfg.RunID == "" {
		cfg.RunID = "lt" + strconv.FormatUint(cfg.Seed%(1<<40), 36)
	}
	if cfg.Arrivals == "" {
		cfg.Arrivals = ArrivalsPoisson
	}
	if _, err := ParseArrivals(string(cfg.Arrivals)); err != nil {
		return err
	}
	cfg.Part = cfg.Part.norm()
	return cfg.Part.Validate()
}

// generator draws requests; only the dispatcher uses it.
type generator struct {
	cfg    Config
	rng    *rand.Rand
	zipf   *rand.Zipf
	picker picker
	seq    int64
	// keyPrefix is the part's run id and "-": keys never collide between
	// the parts of a split run.
	keyPrefix string
}

func newGenerator(cfg Config) *generator {
	seed := cfg.Part.Seed(cfg.Seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	return &generator{
		cfg: cfg, rng: rng, picker: newPicker(cfg.Mix), keyPrefix: cfg.Part.RunID(cfg.RunID) + "-",
		zipf: rand.NewZipf(rng, cfg.ZipfSkew, zipfOffset, uint64(len(cfg.Customers)-1)),
	}
}

// amount draws fen in [lo, hi].
func (g *generator) amount(lo, hi int64) int64 { return lo + g.rng.Int64N(hi-lo+1) }

func (g *generator) next(at time.Duration) request {
	g.seq++
	r := request{
		op:       g.picker.pick(g.rng.IntN(g.picker.total)),
		customer: g.cfg.Customers[g.zipf.Uint64()],
		key:      g.keyPrefix + strconv.FormatInt(g.seq, 36),
		at:       at,
	}
	if amt, ok := opAmounts[r.op]; ok {
		r.amount = g.amount(amt[0], amt[1])
	}
	switch r.op {
	case OpTransfer:
		for r.counterparty == 0 || r.counterparty == r.customer {
			r.counterparty = g.cfg.Customers[g.rng.IntN(len(g.cfg.Customers))]
		}
	case OpPay:
		if g.rng.Float64() < hotMerchantShare {
			r.counterparty = g.cfg.Merchants[g.rng.IntN(g.cfg.HotMerchants)]
		} else {
			r.counterparty = g.cfg.Merchants[g.rng.IntN(len(g.cfg.Merchants))]
		}
	}
	return r
}

// send makes the request, again with the same Idempotency-Key while an
// attempt times out or loses its connection (at most TimeoutRetries more
// times), and classifies the final answer.
func send(ctx context.Context, client *api, cfg Config, r request) (o Outcome, code, status, reason string, retries int) {
	token, err := cfg.Tokens.Customer(r.customer)
	if err != nil {
		return Failed, "token", "", "", 0
	}
	method, path, body := r.httpRequest()
	var a answer
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		a = client.do(actx, method, path, token, r.key, body)
		cancel()
		if a.Err == nil || attempt >= cfg.TimeoutRetries || ctx.Err() != nil {
			break
		}
		retries++
	}
	code = codeOf(a)
	switch {
	case a.Err != nil:
		return Failed, code, "", "", retries
	case a.Status == 429:
		return Shed, code, "", "", retries
	case a.Status == 422:
		return Rejected, code, "REJECTED", refusal(a.Body), retries
	case a.Status >= 200 && a.Status < 300:
		if !r.op.IsOrder() {
			return Accepted, code, "", "", retries
		}
		status = orderStatus(a.Body)
		if isRejected(status) {
			return Rejected, code, status, refusal(a.Body), retries
		}
		return Accepted, code, status, "", retries
	default:
		return Failed, code, "", failure(a.Body), retries
	}
}

// failure says why an error answer failed: its ErrorInfo reason, else its
// message (a proxy in front of the gateways has no reason to give).
func failure(body []byte) string {
	if r := reasonOf(body); r != "" {
		return r
	}
	m := messageOf(body)
	if len(m) > failureLenMax { // a message may name ids: keep the counts by reason few
		m = m[:failureLenMax]
	}
	return m
}

// failureLenMax bounds a failure's message kept as its reason.
const failureLenMax = 60

// refusal names the rule that refused an order: the ErrorInfo reason of a
// 422, or the rejected order's reason, upper-cased ("INSUFFICIENT_FUNDS").
func refusal(body []byte) string {
	if r := reasonOf(body); r != "" {
		return r
	}
	var o struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &o) == nil && o.Reason != "" {
		return strings.ToUpper(o.Reason)
	}
	return "UNKNOWN"
}

func isRejected(status string) bool {
	return status == "REJECTED" || status == "ORDER_STATUS_REJECTED" || status == "rejected"
}

func (r request) httpRequest() (method, path string, body any) {
	c := "/v1/customers/" + strconv.FormatInt(r.customer, 10)
	amt := accounts.FormatAmount(r.amount)
	switch r.op {
	case OpSubscribe:
		return "POST", c + "/subscriptions", map[string]string{"amount": amt}
	case OpFastRedeem:
		return "POST", c + "/redemptions", map[string]string{"amount": amt, "mode": "FAST"}
	case OpStandardRedeem:
		return "POST", c + "/redemptions", map[string]string{"amount": amt, "mode": "STANDARD"}
	case OpTransfer:
		return "POST", c + "/transfers", map[string]string{"amount": amt, "to_customer_id": strconv.FormatInt(r.counterparty, 10)}
	case OpPay:
		return "POST", c + "/payments", map[string]string{"amount": amt, "merchant_id": strconv.FormatInt(r.counterparty, 10)}
	default:
		return "GET", c + "/holdings", nil
	}
}

// progress prints one line a second until done.
func progress(w io.Writer, st *stats, start time.Time, done <-chan struct{}) {
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	var prev Counts
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		cur, _ := st.snapshot()
		p99, codes := st.takeWindow()
		errs := ""
		for _, k := range sortedKeys(codes) {
			if k != "200" {
				errs += fmt.Sprintf(" %s=%d", k, codes[k])
			}
		}
		if errs == "" {
			errs = " none"
		}
		fmt.Fprintf(w, "%4.0fs  sent %5d/s  accepted %5d/s  rejected %4d/s  shed %4d/s  failed %4d/s  dropped %4d  p99 %7.1fms  errors:%s\n",
			time.Since(start).Seconds(), cur.Sent-prev.Sent, cur.Accepted-prev.Accepted, cur.Rejected-prev.Rejected,
			cur.Shed-prev.Shed, cur.Failed-prev.Failed, cur.Dropped-prev.Dropped, float64(p99.Microseconds())/1000, errs)
		prev = cur
	}
}
