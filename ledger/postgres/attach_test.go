package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/postgres"
)

// The attachment writer of the tests writes each attachment's data into a
// table of its own, once (its key), and refuses data "refused" by a CHECK
// constraint, as a writer's statement might fail.
const testAttachmentsTable = `CREATE TABLE test_attachments (data bytea PRIMARY KEY CHECK (data <> 'refused'))`

func writeTestAttachments(q *pgx.Batch, as []ledger.Attached) error {
	data := make([][]byte, len(as))
	for i, a := range as {
		if bytes.Equal(a.Data, []byte("unreadable")) {
			return errors.New("test: unreadable attachment")
		}
		data[i] = a.Data
	}
	q.Queue(`INSERT INTO test_attachments SELECT unnest($1::bytea[]) ON CONFLICT DO NOTHING`, data)
	return nil
}

// openAttachingStore opens a Store with an attachment writer on a fresh
// database that has the writer's table.
func openAttachingStore(t *testing.T, w postgres.AttachmentWriter) *postgres.Store {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, testAttachmentsTable); err != nil {
		t.Fatalf("create the attachments' table: %v", err)
	}
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, ConnsMax: 4, Attachments: w})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// testAttachments is ledgertest.Config.Attachments for the test writer.
func testAttachments(t *testing.T, s ledger.Store, shard int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	rows, err := s.(*postgres.Store).Pool().Query(ctx, `SELECT data FROM test_attachments`)
	if err != nil {
		t.Fatalf("read attachments: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatalf("read attachments: %v", err)
	}
	return out
}

// TestAttachmentWriterFailsTheBatch: when the attachment writer cannot
// write (its statement fails, or it cannot read an attachment) the batch's
// commit fails whole: the request is not acknowledged and neither its
// entries nor any attachment are written; the shard goes on serving, and
// a batch with a good attachment commits both.
func TestAttachmentWriterFailsTheBatch(t *testing.T) {
	t.Parallel()
	st := openAttachingStore(t, writeTestAttachments)
	seq := startSeq(t, st, ledger.SequencerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	bank, alice := ledger.AccountID(1), ledger.AccountID(2)
	if _, err := seq.CreateAccounts(ctx, []ledger.Account{{ID: bank, Asset: ledger.AssetCNY, Code: 1},
		{ID: alice, Asset: ledger.AssetCNY, Code: 2}}); err != nil {
		t.Fatal(err)
	}
	var ids []ledger.TransferID
	for _, data := range []string{"refused", "unreadable"} {
		tr := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: bank, CreditAccountID: alice, Amount: 5, Asset: ledger.AssetCNY}
		ids = append(ids, tr.ID)
		if _, _, err := seq.CreateTransfersAttached(ctx, []ledger.Transfer{tr}, []byte(data)); !errors.Is(err, ledger.ErrCommitFailed) {
			t.Fatalf("attachment %q: %v, want ErrCommitFailed", data, err)
		}
	}
	good := ledger.Transfer{ID: ledger.NewTransferID(), DebitAccountID: bank, CreditAccountID: alice, Amount: 7, Asset: ledger.AssetCNY}
	rs, attached, err := seq.CreateTransfersAttached(ctx, []ledger.Transfer{good}, []byte("good"))
	if err != nil || !attached || rs[0].Result != ledger.ResultOK {
		t.Fatalf("good attachment: %v attached=%v err=%v", rs, attached, err)
	}
	counts := journalCounts(t, st.Pool(), append(ids, good.ID))
	for _, id := range append(ids, good.ID) {
		if n, want := counts[id], map[bool]int{true: 1, false: 0}[id == good.ID]; n != want {
			t.Errorf("transfer %s: %d journal entries, want %d", id, n, want)
		}
	}
	if got := testAttachments(t, st, 0); len(got) != 1 || string(got[0]) != "good" {
		t.Errorf("attachments %q, want only \"good\"", got)
	}
	mustVerify(t, st)
}
