package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// Several shards of one database commit at once, so their batches share
// transactions (group commit) and their id lookups share queries; one shard
// lost its lease. Each live shard gets every transfer applied exactly once,
// the stale one gets none, and after a restart every id is known again.
func TestGroupCommitAcrossShards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		shards    = 4
		fenced    = 2
		clients   = 8 // per shard
		transfers = 25
	)
	dsn := pgtest.NewDatabase(t)
	// One transaction in flight: every batch that arrives meanwhile joins
	// the next one.
	// Every notice the server sends is kept: a commit must raise none (a
	// SET LOCAL that Postgres ignored came back as a warning per commit).
	var (
		noticeMu sync.Mutex
		notices  []string
	)
	store, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 8, CommitsInFlightMax: 1,
		OnNotice: func(n *pgconn.Notice) {
			if n.Severity != "NOTICE" { // "relation already exists, skipping" is expected
				noticeMu.Lock()
				defer noticeMu.Unlock()
				notices = append(notices, n.Severity+": "+n.Message)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)

	// Two accounts per shard.
	accts := make([][2]ledger.AccountID, shards)
	for id, n := ledger.AccountID(1), 0; n < 2*shards; id++ {
		s := ledger.ShardOf(id, shards)
		for k := range accts[s] {
			if accts[s][k] == 0 {
				accts[s][k] = id
				n++
				break
			}
		}
	}
	seqs := make([]*runningSeq, shards)
	for s := range seqs {
		seqs[s] = startSeq(t, store, ledger.SequencerConfig{Shard: s, Shards: shards, FillWhileCommitting: true})
		rs, err := seqs[s].CreateAccounts(ctx, []ledger.Account{{ID: accts[s][0], Asset: ledger.AssetCNY}, {ID: accts[s][1], Asset: ledger.AssetCNY}})
		if err != nil || !rs[0].Result.Applied() || !rs[1].Result.Applied() {
			t.Fatalf("shard %d accounts: %v %v", s, rs, err)
		}
	}
	// Another owner takes the shard over: its old writer is now stale.
	if _, ok, err := store.AcquireLease(ctx, fenced, "other", "", time.Minute); err != nil || !ok {
		t.Fatalf("take shard %d over: ok=%v err=%v", fenced, ok, err)
	}

	var (
		mu    sync.Mutex
		sent  = make([][]ledger.Transfer, shards)
		acked = make([]int, shards)
		errs  = make([]error, shards) // the first error per shard
		wg    sync.WaitGroup
	)
	for s := 0; s < shards; s++ {
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < transfers; i++ {
					tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: accts[s][0], CreditAccountID: accts[s][1],
						Amount: 1, Asset: ledger.AssetCNY}
					rs, err := seqs[s].CreateTransfers(ctx, []ledger.Transfer{tr})
					mu.Lock()
					sent[s] = append(sent[s], tr)
					if err == nil && rs[0].Result == ledger.ResultOK {
						acked[s]++
					} else if errs[s] == nil {
						errs[s] = err
						if err == nil {
							errs[s] = errors.New(rs[0].Result.String())
						}
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}
	wg.Wait()

	for s := 0; s < shards; s++ {
		switch {
		case s == fenced && (acked[s] != 0 || !errors.Is(errs[s], ledger.ErrFenced)):
			t.Errorf("stale shard %d: %d acknowledged, first error %v; want none and ErrFenced", s, acked[s], errs[s])
		case s != fenced && (acked[s] != clients*transfers || errs[s] != nil):
			t.Errorf("shard %d: %d of %d acknowledged, first error %v", s, acked[s], clients*transfers, errs[s])
		}
		ids := make([]ledger.TransferID, len(sent[s]))
		for i := range sent[s] {
			ids[i] = sent[s][i].ID
		}
		counts := journalCounts(t, store.Pool(), ids)
		for _, tr := range sent[s] {
			want := 1
			if s == fenced {
				want = 0
			}
			if counts[tr.ID] != want {
				t.Fatalf("shard %d transfer %s: %d journal entries, want %d", s, tr.ID, counts[tr.ID], want)
			}
		}
	}
	mustVerify(t, store)

	// Restarted writers look the ids up (several shards at once): every
	// retry is recognised, none applies twice.
	for s := range seqs {
		if s == fenced {
			continue
		}
		if err := seqs[s].stop(t); err != nil {
			t.Fatalf("stop shard %d: %v", s, err)
		}
		seqs[s] = startSeq(t, store, ledger.SequencerConfig{Shard: s, Shards: shards})
	}
	for s := 0; s < shards; s++ {
		if s == fenced {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := seqs[s].CreateTransfers(ctx, sent[s])
			if err != nil {
				t.Errorf("shard %d retries: %v", s, err)
				return
			}
			for i, r := range rs {
				if r.Result != ledger.ResultExists {
					t.Errorf("shard %d retry of %s: %s, want exists", s, sent[s][i].ID, r.Result)
					return
				}
			}
		}()
	}
	wg.Wait()
	noticeMu.Lock()
	defer noticeMu.Unlock()
	if len(notices) > 0 {
		t.Errorf("the server sent %d warnings, the first: %s", len(notices), notices[0])
	}
}
