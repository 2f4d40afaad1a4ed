package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/fundplatform/fund/accounts"
)

// Limits of the setup.
const (
	SetupParallelismDefault = 32
	SetupParallelismMax     = 1024
	SetupCustomersMax       = 10_000_000
	setupAttemptsMax        = 8
	setupBackoffMax         = 2 * time.Second
	setupTimeout            = 30 * time.Second // per call
)

// SetupConfig describes the customers and merchants a run needs.
type SetupConfig struct {
	Target     string
	AdminToken string
	// Tokens for the customers' own top-ups and subscriptions.
	Tokens interface {
		Customer(int64) (string, error)
	}
	Customers int   // how many to open
	Balance   int64 // fen topped up into each one's cash; 0 = none
	Subscribe int64 // fen of that subscribed into fund shares; 0 = none
	// Subscribers is how many customers subscribe (the first ones, which
	// the Zipf draw makes the busiest); 0 = all of them.
	Subscribers int
	Merchants   int // merchants 1..Merchants registered
	Parallelism int // calls at once; 0 = SetupParallelismDefault
	// RunID makes the idempotency keys: running the setup again with the
	// same RunID opens no new customer.
	RunID    string
	Progress io.Writer // a progress bar; nil = none
	// Backend opens customers some other way than the REST API (a bulk
	// path, such as calling the accounts service in-process); nil = the
	// API at Target.
	Backend Backend
	// Part opens only this part's customers (setup indices i-1 modulo n,
	// keyed by their index, so that the parts of a split run never send
	// the same key); the zero Part opens them all. Every part registers
	// every merchant, under the same keys.
	Part Part
	// OnSubscribed, when set, is told the trade and confirm dates of each
	// setup subscription the REST API accepted (ConfirmShares settles up
	// to the last confirm date). It may be called from several goroutines.
	OnSubscribed func(tradeDate, confirmDate string)
}

// Backend is what the setup needs from the platform. Each call is
// idempotent by its key and is made until it succeeds or fails for good.
type Backend interface {
	OpenCustomer(ctx context.Context, key, name string) (int64, error)
	TopUp(ctx context.Context, c int64, key string, amount int64) error
	Subscribe(ctx context.Context, c int64, key string, amount int64) error
	RegisterMerchant(ctx context.Context, m int64, key string) error
}

// ErrSetup is wrapped by a setup call that kept failing.
var ErrSetup = errors.New("setup")

// Setup opens the customers through the admin API (POST /v1/customers),
// tops each up and subscribes part of it, and registers the merchants; all
// with idempotency keys, bounded parallelism and bounded retries. It
// returns the ids of the customers it opened (the part's, for a part of a
// split run) and of the merchants.
func Setup(ctx context.Context, cfg SetupConfig) (customers, merchants []int64, err error) {
	if cfg.Customers < 1 || cfg.Customers > SetupCustomersMax {
		return nil, nil, fmt.Errorf("customers %d: want 1..%d", cfg.Customers, SetupCustomersMax)
	}
	if cfg.Parallelism == 0 {
		cfg.Parallelism = SetupParallelismDefault
	}
	if cfg.Parallelism < 1 || cfg.Parallelism > SetupParallelismMax {
		return nil, nil, fmt.Errorf("setup parallelism %d: want 1..%d", cfg.Parallelism, SetupParallelismMax)
	}
	if cfg.Subscribers < 0 {
		return nil, nil, fmt.Errorf("subscribers %d: want >= 0", cfg.Subscribers)
	}
	if cfg.Subscribe > cfg.Balance || cfg.Balance < 0 || cfg.Subscribe < 0 {
		return nil, nil, fmt.Errorf("balance %d, subscribe %d: want 0 <= subscribe <= balance", cfg.Balance, cfg.Subscribe)
	}
	if cfg.Part = cfg.Part.norm(); cfg.Part.Validate() != nil {
		return nil, nil, cfg.Part.Validate()
	}
	if cfg.RunID == "" {
		cfg.RunID = "setup" + strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36)
	}
	be := cfg.Backend
	if be == nil {
		u, err := CheckTarget(cfg.Target, true)
		if err != nil {
			return nil, nil, err
		}
		client := newAPI(u.String(), cfg.Parallelism)
		defer client.close()
		be = &apiBackend{client: client, admin: cfg.AdminToken, tokens: cfg.Tokens, onSubscribed: cfg.OnSubscribed}
	}

	for m := 1; m <= cfg.Merchants; m++ {
		if err := be.RegisterMerchant(ctx, int64(m), fmt.Sprintf("%s-m%d", cfg.RunID, m)); err != nil {
			return nil, nil, fmt.Errorf("register merchant %d: %w", m, err)
		}
		merchants = append(merchants, int64(m))
	}

	var bar *progressbar.ProgressBar
	if cfg.Progress != nil {
		bar = progressbar.NewOptions(cfg.Part.Size(cfg.Customers), progressbar.OptionSetWriter(cfg.Progress),
			progressbar.OptionSetDescription("opening customers"), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionThrottle(500*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(cfg.Progress) }))
	}
	// The part's customers: setup indices Index-1, Index-1+Count, ...
	customers = make([]int64, cfg.Part.Size(cfg.Customers))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := 0; w < cfg.Parallelism; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= len(customers) || ctx.Err() != nil {
					return
				}
				id, err := openOne(ctx, be, cfg, j*cfg.Part.Count+cfg.Part.Index-1)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				customers[j] = id
				if bar != nil {
					_ = bar.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if bar != nil {
		_ = bar.Finish()
	}
	if firstErr != nil {
		return nil, nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return customers, merchants, nil
}

func openOne(ctx context.Context, be Backend, cfg SetupConfig, i int) (int64, error) {
	key := fmt.Sprintf("%s-c%d", cfg.RunID, i)
	id, err := be.OpenCustomer(ctx, key, fmt.Sprintf("Load %s %d", cfg.RunID, i))
	if err != nil {
		return 0, fmt.Errorf("open customer %d: %w", i, err)
	}
	if cfg.Balance > 0 {
		if err := be.TopUp(ctx, id, key+"-t", cfg.Balance); err != nil {
			return 0, fmt.Errorf("top up customer %d: %w", id, err)
		}
	}
	if cfg.Subscribe > 0 && (cfg.Subscribers == 0 || i < cfg.Subscribers) {
		if err := be.Subscribe(ctx, id, key+"-s", cfg.Subscribe); err != nil {
			return 0, fmt.Errorf("subscribe for customer %d: %w", id, err)
		}
	}
	return id, nil
}

// apiBackend is the setup through the REST API.
type apiBackend struct {
	client *api
	admin  string
	tokens interface {
		Customer(int64) (string, error)
	}
	onSubscribed func(tradeDate, confirmDate string)
}

func (b *apiBackend) OpenCustomer(ctx context.Context, key, name string) (int64, error) {
	body, err := setupCall(ctx, b.client, "POST", "/v1/customers", b.admin, key, map[string]string{"name": name})
	if err != nil {
		return 0, err
	}
	return idOf(body)
}

func (b *apiBackend) order(ctx context.Context, c int64, path, key string, amount int64) ([]byte, error) {
	token, err := b.tokens.Customer(c)
	if err != nil {
		return nil, err
	}
	return setupCall(ctx, b.client, "POST", "/v1/customers/"+strconv.FormatInt(c, 10)+path, token, key,
		map[string]string{"amount": accounts.FormatAmount(amount)})
}

func (b *apiBackend) TopUp(ctx context.Context, c int64, key string, amount int64) error {
	_, err := b.order(ctx, c, "/topups", key, amount)
	return err
}

func (b *apiBackend) Subscribe(ctx context.Context, c int64, key string, amount int64) error {
	body, err := b.order(ctx, c, "/subscriptions", key, amount)
	if err == nil && b.onSubscribed != nil {
		var o struct {
			TradeDate   string `json:"trade_date"`
			ConfirmDate string `json:"confirm_date"`
		}
		if json.Unmarshal(body, &o) == nil && o.ConfirmDate != "" {
			b.onSubscribed(o.TradeDate, o.ConfirmDate)
		}
	}
	return err
}

func (b *apiBackend) RegisterMerchant(ctx context.Context, m int64, key string) error {
	_, err := setupCall(ctx, b.client, "POST", "/v1/admin/merchants", b.admin, key,
		map[string]string{"merchant_id": strconv.FormatInt(m, 10)})
	return err
}

// setupCall makes one setup call until it gets a 2xx answer, retrying with
// the same key on 429, 503, timeouts and broken connections, at most
// setupAttemptsMax times with a doubling pause.
func setupCall(ctx context.Context, client *api, method, path, token, key string, body any) ([]byte, error) {
	pause := 50 * time.Millisecond
	var last string
	for attempt := 0; attempt < setupAttemptsMax; attempt++ {
		actx, cancel := context.WithTimeout(ctx, setupTimeout)
		a := client.do(actx, method, path, token, key, body)
		cancel()
		if a.Err == nil && a.Status >= 200 && a.Status < 300 {
			if isRejected(orderStatus(a.Body)) {
				return nil, fmt.Errorf("%w: %s %s: rejected: %.300s", ErrSetup, method, path, a.Body)
			}
			return a.Body, nil
		}
		retry := a.Err != nil || a.Status == 429 || a.Status == 503 || a.Status == 502 || a.Status == 504
		if a.Err != nil {
			last = a.Err.Error()
		} else {
			last = fmt.Sprintf("%d %.300s", a.Status, a.Body)
		}
		if !retry || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, setupBackoffMax)
	}
	return nil, fmt.Errorf("%w: %s %s: %s", ErrSetup, method, path, last)
}
