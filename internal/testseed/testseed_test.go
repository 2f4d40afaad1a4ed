package testseed_test

import (
	"testing"

	"github.com/fundplatform/fund/internal/testseed"
)

func TestSeedReplaysTheVariable(t *testing.T) {
	t.Setenv(testseed.Env, "12345")
	if got := testseed.Seed(t); got != 12345 {
		t.Fatalf("Seed = %d with %s=12345", got, testseed.Env)
	}
}
