package localpg

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUser is the OS user the server runs as when we are root, because
// postgres and initdb refuse to run as root.
const serverUser = "postgres"

// owner says which OS user runs the PostgreSQL processes. The zero value
// means "the current user": nothing to switch to and nothing to chown.
type owner struct {
	name     string
	uid, gid uint32
	switched bool
}

// currentOwner returns the user to run PostgreSQL as: the current one, or
// the "postgres" user when the current one is root.
func currentOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return owner{}, fmt.Errorf("running as root needs an OS user %q to run PostgreSQL (install Debian's postgresql package): %w", serverUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("user %s uid %q: %w", serverUser, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return owner{}, fmt.Errorf("user %s gid %q: %w", serverUser, u.Gid, err)
	}
	return owner{name: serverUser, uid: uint32(uid), gid: uint32(gid), switched: true}, nil
}

// sysProcAttr makes a child process run as the owner. An empty Groups list
// drops root's supplementary groups rather than passing them on.
func (o owner) sysProcAttr() *syscall.SysProcAttr {
	if !o.switched {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: o.uid, Gid: o.gid, Groups: []uint32{}}}
}

// chown gives path to the owner; a no-op when no user switch happens.
func (o owner) chown(path string) error {
	if !o.switched {
		return nil
	}
	if err := os.Chown(path, int(o.uid), int(o.gid)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, o.name, err)
	}
	return nil
}

// checkTraversable reports, before initdb fails with a vaguer message, a
// directory above the data directory that the owner cannot enter. Only the
// owner's primary group is considered because sysProcAttr drops the others.
func (o owner) checkTraversable(dir string) error {
	if !o.switched {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		allowed := perm&0o001 != 0 ||
			ok && st.Uid == o.uid && perm&0o100 != 0 ||
			ok && st.Gid == o.gid && perm&0o010 != 0
		if !allowed {
			return fmt.Errorf("directory %s (mode %v) is not traversable by OS user %s, which runs PostgreSQL because we are root; chmod o+x it or choose another directory (TMPDIR or Options.Dir)", d, perm, o.name)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}
