package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/fundplatform/fund/internal/localpg/pgtest"
	"github.com/fundplatform/fund/internal/proctest"
)

// childEnv makes the test binary act as fundd, so the tests run real fundd
// processes, with their command lines, without building a second binary.
const childEnv = "FUNDD_TEST_AS_FUNDD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signalContext()
		err := run(ctx, os.Args[1:])
		stop()
		if err != nil {
			os.Stderr.WriteString("fundd: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

func startFundd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	proctest.Start(t, cmd, fmt.Sprintf("fundd %v", args))
	return cmd
}
