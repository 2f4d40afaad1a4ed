package ledgertest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/fundplatform/fund/internal/testseed"
	"github.com/fundplatform/fund/ledger"
)

// Sizes of the randomised test. Its clients send requests at the same
// time, so that batches hold several requests; each works on accounts and
// ids of its own, so that its results do not depend on how its requests
// interleave with the others' and its model predicts them exactly. A new
// sequencer takes over the store between phases.
const (
	modelClients          = 3
	modelPhases           = 3
	modelRequestsPerPhase = 120
	modelItemsMax         = 3 // transfers or chains in one request
)

// testModel sends random requests to sequencers over the store and to the
// model, and compares every result and, after each phase and each restart,
// every balance.
func testModel(t *testing.T, s *shard) {
	seed := testseed.Seed(t)
	clients := make([]*modelClient, modelClients)
	seq := s.start(ledger.SequencerConfig{})
	for c := range clients {
		clients[c] = newModelClient(seed, c)
		createAccounts(t, seq, clients[c].accounts...)
	}
	for phase := range modelPhases {
		if phase > 0 {
			seq.stop(t)
			seq = s.start(ledger.SequencerConfig{})
			for _, c := range clients {
				c.compare(t, seq, fmt.Sprintf("after restart %d", phase))
			}
		}
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.run(t, seq, modelRequestsPerPhase)
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, c := range clients {
			c.compare(t, seq, fmt.Sprintf("after phase %d", phase))
		}
	}
	seq.stop(t)
	seen := map[ledger.Result]int{}
	for _, c := range clients {
		for r, n := range c.seen {
			seen[r] += n
		}
	}
	t.Logf("results: %v", seen)
}

// modelClient sends one client's random requests and predicts their
// results with its own model.
type modelClient struct {
	id       int
	rng      *rand.Rand
	seed     uint64
	n        int
	accounts []ledger.Account
	byAsset  map[ledger.Asset][]ledger.AccountID
	system   map[ledger.Asset]ledger.AccountID
	users    []ledger.AccountID // limited CNY accounts, the ones top-ups fund
	model    *model
	holds    []ledger.TransferID   // every hold sent, applied or not
	sentList [][]ledger.Transfer   // every chain or lone transfer sent, for retries
	lastTS   int64                 // the newest timestamp this client was answered
	seen     map[ledger.Result]int // how often each result came, to show what the run covered
}

func newModelClient(seed uint64, id int) *modelClient {
	base := ledger.AccountID(1000 * (id + 1))
	user, debitNormal := ledger.DebitsMustNotExceedCredits, ledger.CreditsMustNotExceedDebits
	c := &modelClient{
		id:   id,
		rng:  rand.New(rand.NewPCG(seed, uint64(id))),
		seed: seed,
		accounts: []ledger.Account{
			{ID: base + 1, Asset: ledger.AssetCNY, Code: 1},               // bank settlement: no limit
			{ID: base + 2, Asset: ledger.AssetFundShares, Code: 1},        // share issuer: no limit
			{ID: base + 3, Asset: ledger.AssetCNY, Code: 10, Flags: user}, // customers' cash
			{ID: base + 4, Asset: ledger.AssetCNY, Code: 10, Flags: user},
			{ID: base + 5, Asset: ledger.AssetCNY, Code: 10, Flags: user},
			{ID: base + 6, Asset: ledger.AssetFundShares, Code: 11, Flags: user}, // a customer's shares
			{ID: base + 7, Asset: ledger.AssetCNY, Code: 20, Flags: debitNormal}, // a receivable
		},
		byAsset: map[ledger.Asset][]ledger.AccountID{},
		system:  map[ledger.Asset]ledger.AccountID{ledger.AssetCNY: base + 1, ledger.AssetFundShares: base + 2},
		users:   []ledger.AccountID{base + 3, base + 4, base + 5},
		seen:    map[ledger.Result]int{},
	}
	for _, a := range c.accounts {
		c.byAsset[a.Asset] = append(c.byAsset[a.Asset], a.ID)
	}
	c.model = newModel(c.accounts)
	return c
}

// run sends n requests one after the other and checks each answer.
func (c *modelClient) run(t *testing.T, seq *running, n int) {
	for req := range n {
		in := c.request()
		ctx, cancel := reqCtx()
		got, err := seq.CreateTransfers(ctx, in)
		cancel()
		if err != nil {
			t.Errorf("client %d: request of %d transfers: %v", c.id, len(in), err)
			return
		}
		want := c.model.request(in)
		for i := range in {
			if got[i].Result != want[i] {
				t.Errorf("client %d, request %d of the phase, transfer %d of %d %s: %s, want %s",
					c.id, req+1, i+1, len(in), describe(in[i]), got[i].Result, want[i])
				return
			}
			c.seen[want[i]]++
			if !c.timestampOK(got[i]) {
				t.Errorf("client %d, transfer %s: result %s at %d after %d", c.id, describe(in[i]), got[i].Result, got[i].Timestamp, c.lastTS)
				return
			}
		}
	}
}

// timestampOK checks a result's timestamp: an applied transfer gets one
// later than any before it on the shard, anything else none.
func (c *modelClient) timestampOK(r ledger.TransferResult) bool {
	if r.Result != ledger.ResultOK {
		return r.Timestamp == 0
	}
	if r.Timestamp <= c.lastTS {
		return false
	}
	c.lastTS = r.Timestamp
	return true
}

// compare checks every balance of the client's accounts against the model.
func (c *modelClient) compare(t *testing.T, seq *running, when string) {
	t.Helper()
	ids := make([]ledger.AccountID, len(c.accounts))
	for i, a := range c.accounts {
		ids[i] = a.ID
	}
	for _, a := range lookup(t, seq, ids...) {
		m := c.model.accounts[a.ID]
		if sumsOf(a) != sumsOf(m) || a.Asset != m.Asset || a.Flags != m.Flags || a.Code != m.Code {
			t.Errorf("client %d %s: account %d is %+v, the model says %+v", c.id, when, a.ID, a, m)
		}
		if a.Flags&ledger.DebitsMustNotExceedCredits != 0 && a.Available() < 0 {
			t.Errorf("client %d %s: account %d below zero available: %+v", c.id, when, a.ID, a)
		}
	}
}

// newID returns an id that no other client uses, nor a run with another
// seed.
func (c *modelClient) newID() ledger.TransferID {
	c.n++
	return ledger.DeriveTransferID("ledgertest.model", fmt.Sprint(c.seed), fmt.Sprint(c.id), fmt.Sprint(c.n))
}

// request makes one request: lone transfers and chains, new ones mostly,
// sometimes a verbatim retry of something sent before (applied or not) or a
// reuse of an earlier id with other fields.
func (c *modelClient) request() []ledger.Transfer {
	var out []ledger.Transfer
	for range 1 + c.rng.IntN(modelItemsMax) {
		switch p := c.rng.IntN(100); {
		case p < 10 && len(c.sentList) > 0:
			out = append(out, c.sentList[c.rng.IntN(len(c.sentList))]...)
		case p < 15 && len(c.sentList) > 0:
			out = append(out, c.conflicting())
		case p < 30:
			chain := make([]ledger.Transfer, 2+c.rng.IntN(2))
			for i := range chain {
				chain[i] = c.fresh()
				if i < len(chain)-1 {
					chain[i].Flags |= ledger.Linked
				}
			}
			c.sentList = append(c.sentList, chain)
			out = append(out, chain...)
		default:
			tr := c.fresh()
			c.sentList = append(c.sentList, []ledger.Transfer{tr})
			out = append(out, tr)
		}
	}
	return out
}

// conflicting reuses the id of a lone transfer sent before with one field
// changed.
func (c *modelClient) conflicting() ledger.Transfer {
	item := c.sentList[c.rng.IntN(len(c.sentList))]
	tr := item[len(item)-1] // the last member of a chain carries no Linked flag
	if c.rng.IntN(2) == 0 {
		tr.Amount++
	} else {
		tr.UserData += "x"
	}
	return tr
}

// fresh makes a new transfer: a payment, a top-up, a hold, or a post or
// void of a hold sent before (or of none).
func (c *modelClient) fresh() ledger.Transfer {
	tr := ledger.Transfer{ID: c.newID()}
	if c.rng.IntN(4) == 0 {
		tr.UserData = fmt.Sprintf("order-%d", c.n)
	}
	switch p := c.rng.IntN(100); {
	case p < 15: // top-up: the bank pays a customer
		tr.DebitAccountID, tr.CreditAccountID, tr.Asset = c.system[ledger.AssetCNY], c.users[c.rng.IntN(len(c.users))], ledger.AssetCNY
		tr.Amount = 1 + c.rng.Int64N(500)
	case p < 55:
		c.between(&tr)
	case p < 75:
		c.between(&tr)
		tr.Flags = ledger.Pending
		c.holds = append(c.holds, tr.ID)
	case p < 90:
		tr.Flags, tr.PendingID = ledger.PostPending, c.holdID()
		if c.rng.IntN(2) == 0 {
			tr.Amount = 1 + c.rng.Int64N(150) // part of the hold, or more than it
		}
	default:
		tr.Flags, tr.PendingID = ledger.VoidPending, c.holdID()
		if c.rng.IntN(10) == 0 {
			tr.Amount = 1 + c.rng.Int64N(150) // must be the hold's amount
		}
	}
	return tr
}

// between fills in two distinct accounts and an amount, now and then with
// the credit account of another asset.
func (c *modelClient) between(tr *ledger.Transfer) {
	tr.Asset = ledger.AssetCNY
	if c.rng.IntN(5) == 0 {
		tr.Asset = ledger.AssetFundShares
	}
	ids := c.byAsset[tr.Asset]
	i := c.rng.IntN(len(ids))
	j := (i + 1 + c.rng.IntN(len(ids)-1)) % len(ids)
	tr.DebitAccountID, tr.CreditAccountID = ids[i], ids[j]
	if c.rng.IntN(20) == 0 {
		other := c.byAsset[ledger.AssetCNY]
		if tr.Asset == ledger.AssetCNY {
			other = c.byAsset[ledger.AssetFundShares]
		}
		tr.CreditAccountID = other[c.rng.IntN(len(other))]
	}
	tr.Amount = 1 + c.rng.Int64N(200)
}

// holdID is a hold sent before, or now and then an id no hold has.
func (c *modelClient) holdID() ledger.TransferID {
	if len(c.holds) == 0 || c.rng.IntN(10) == 0 {
		return c.newID()
	}
	return c.holds[c.rng.IntN(len(c.holds))]
}
