package settlebench_test

import (
	"context"
	"testing"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/settlement/settlebench"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestBenchSmall runs the whole benchmark path on a small day: seed, settle,
// verify.
func TestBenchSmall(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	res, err := settlebench.Run(context.Background(), settlebench.Config{DSN: dsn, Accounts: 3000, Shards: 3,
		FileDir: t.TempDir(), IncomePer10k: 6543, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified {
		t.Fatal("not verified")
	}
	t.Logf("%+v", res.Summary)
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(string(p))
	return len(p), nil
}
