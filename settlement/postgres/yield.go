package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/fundplatform/fund/accounts"
	accountspg "github.com/fundplatform/fund/accounts/postgres"
	"github.com/fundplatform/fund/ledger"
)

// OpenYieldPublisher returns an accounts.Service on the accounts store at
// dsn, for the run's PublishFundYield (settlement.YieldPublisher), and a
// function that closes it. A process that already has an accounts.Service
// (fundd dev) passes that one instead.
//
// The service is built over a ledger client that moves no money: settlement
// calls nothing of it that would (PublishFundYield reads and writes the
// accounts store only). NewService's idempotent creation of the system
// accounts is answered "exists"; the run's Prepare creates those it books.
func OpenYieldPublisher(ctx context.Context, dsn string) (*accounts.Service, func(), error) {
	st, err := accountspg.Open(ctx, accountspg.Config{DSN: dsn, ConnsMax: 2})
	if err != nil {
		return nil, nil, fmt.Errorf("accounts store: %w", err)
	}
	svc, err := accounts.NewService(ctx, accounts.Config{}, st, noMoney{}, nil)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return svc, st.Close, nil
}

// noMoney is a ledger.Client for a Service used only for its records.
type noMoney struct{}

var errNoMoney = fmt.Errorf("%w: settlement's accounts service moves no money", accounts.ErrLedger)

func (noMoney) CreateAccounts(_ context.Context, as []ledger.Account) ([]ledger.AccountResult, error) {
	out := make([]ledger.AccountResult, len(as))
	for i := range out {
		out[i].Result = ledger.ResultExists
	}
	return out, nil
}

func (noMoney) CreateTransfers(context.Context, []ledger.Transfer) ([]ledger.TransferResult, error) {
	return nil, errNoMoney
}

func (noMoney) CloseAccounts(context.Context, []ledger.AccountID) ([]ledger.AccountResult, error) {
	return nil, errNoMoney
}

func (noMoney) LookupAccounts(context.Context, []ledger.AccountID) ([]ledger.Account, error) {
	return nil, errNoMoney
}

// OpenForRunner opens what a settlement.Runner needs from the shard
// databases dsns (shard-map order; one database holds every shard) over
// shards logical shards (0 = as many as the databases' tables show): the
// store, with connections in each database for parallel shards settled at
// once (two each, plus a few for the run's own steps), and the yield
// publisher on the first database, which holds the fund's yields. release
// releases both. now is the business clock that stamps the run's entries
// (nil = the wall clock).
func OpenForRunner(ctx context.Context, dsns []string, shards, parallel int, now func() time.Time) (store *Sharded,
	yields *accounts.Service, release func(), err error) {
	store, err = OpenSharded(ctx, ShardedConfig{DSNs: dsns, Shards: shards, ConnsMax: int32(4 + 2*max(parallel, 2)), Now: now})
	if err != nil {
		return nil, nil, nil, err
	}
	yields, closeYields, err := OpenYieldPublisher(ctx, dsns[0])
	if err != nil {
		store.Close()
		return nil, nil, nil, err
	}
	return store, yields, func() { closeYields(); store.Close() }, nil
}
