package testseed

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Env names the variable that replays a seed.
const Env = "FUND_TEST_SEED"

// Seed returns the test's seed and logs it with its replay command. A
// malformed FUND_TEST_SEED fails the test rather than run another seed.
func Seed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(Env); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", Env, s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay: %s=%d go test -run '^%s$' %s)", seed, Env, seed, t.Name(), packageDir())
	return seed
}

// packageDir is the test's package as a path from the module root (go test
// runs a package's tests in its directory), or "." when that cannot be
// told.
func packageDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			rel, err := filepath.Rel(dir, wd)
			if err != nil {
				return "."
			}
			return "./" + filepath.ToSlash(rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "."
		}
		dir = parent
	}
}
