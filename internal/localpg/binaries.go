package localpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// debianBinGlob is where Debian and Ubuntu install each PostgreSQL major
// version; their /usr/bin holds wrappers for client tools only, not initdb
// or pg_ctl, so PATH alone rarely finds them there.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// ErrNoBinaries is returned by FindBinaries (and so by Start) when no
// PostgreSQL server installation is found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, pg_ctl) found in PATH or " + debianBinGlob + "; run `make postgres`")

// FindBinaries returns the directory holding initdb and pg_ctl: the one on
// PATH if initdb is there, else the highest version under
// /usr/lib/postgresql/*/bin.
func FindBinaries() (binDir string, err error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		// Resolve symlinks (say /usr/local/bin/initdb pointing into
		// /usr/lib/postgresql/15/bin) so that the directory returned holds
		// the whole installation, postgres included.
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			initdb = real
		}
		dir := filepath.Dir(initdb)
		if isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	dirs, err := filepath.Glob(debianBinGlob)
	if err != nil {
		return "", fmt.Errorf("find PostgreSQL binaries: %w", err)
	}
	// Highest version first; directory names are versions like "9.6" or "15".
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

// compareVersions compares dotted numeric versions, so that "15" > "9.6".
// Non-numeric parts compare as 0, which is good enough to pick a directory.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
