package localpg

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPUTime is the CPU time (user and system) used so far by the server: its
// postmaster and the processes it started. Benchmarks read it before and
// after a phase to tell Postgres's share of the work from their own. ok is
// false where /proc is not there (not Linux).
func (s *Server) CPUTime() (time.Duration, bool) { return ProcessCPU(s.dataDir) }

// ProcessCPU is CPUTime of the server whose data directory is dir: the
// postmaster named on the first line of postmaster.pid and its children,
// read from /proc. Backends that already exited are not counted, so a
// phase should be measured while its connections stay open (pools do).
func ProcessCPU(dir string) (time.Duration, bool) {
	if dir == "" {
		return 0, false
	}
	raw, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	master, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	if err != nil {
		return 0, false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	var ticks int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state ppid ... utime(14) stime(15).
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if pid != master && ppid != master {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		sy, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + sy
	}
	return time.Duration(ticks) * time.Second / ticksPerSecond, true
}
