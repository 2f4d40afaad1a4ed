package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// module is the import path of this module (go.mod's module line).
const module = "github.com/fundplatform/fund"

// topLevel are the assemblies: they may import any domain, and nothing may
// import them except one another (and cmd imports nothing of the rest).
var topLevel = map[string]bool{"loadtest": true, "deploy": true, "cmd": true, "internal/devstack": true}

// settlementAdapters are settlement's packages other than its domain
// (settlement, settlement/recon): adapters named after their technology,
// the roles that wire them, and the bench.
var settlementAdapters = []string{"settlement/postgres", "settlement/kafka", "settlement/nightly",
	"settlement/settlebench", "settlement/recon/postgres", "settlement/recon/kafka", "settlement/recon/worker"}

// forbidden says, for a package path relative to the module, which
// module-relative import prefixes it must not use, and why.
func forbidden(pkg string) (prefixes []string, why string) {
	top := strings.SplitN(pkg, "/", 2)[0]
	above := []string{"loadtest", "deploy", "cmd", "internal/devstack"}
	switch {
	case pkg == "internal/devstack" || strings.HasPrefix(pkg, "internal/devstack/"):
		return []string{"loadtest", "deploy", "cmd"}, "the dev stack composes the roles; the tools on top compose it"
	case top == "internal":
		return append([]string{"ledger", "accounts", "settlement", "gateway"}, above...), "internal/ is plumbing below every domain"
	case top == "ledger":
		return append([]string{"accounts", "settlement", "gateway"}, above...), "the ledger is the core and knows no one"
	case top == "accounts":
		return append([]string{"settlement", "gateway"}, above...), "accounts sits on the ledger only"
	case top == "settlement":
		return append([]string{"gateway"}, above...), "settlement sits on accounts and the ledger"
	case top == "gateway":
		// The gateway may speak settlement's domain types (the admin API's
		// settlement and reconciliation calls: settlement, settlement/recon),
		// never its adapters or its roles.
		return append(settlementAdapters, above...), "the gateway uses settlement's domain, not its adapters"
	case top == "loadtest":
		return []string{"deploy", "cmd"}, "the load tester drives the platform from outside"
	case top == "deploy":
		return []string{"cmd", "loadtest"}, "deployment runs the commands, it does not link them"
	case top == "cmd":
		return nil, ""
	}
	return nil, ""
}

// TestImportsPointDown fails on every import that runs back up the layers.
// It reads the source (non-test files, as `go list`'s Imports does), so it
// needs no toolchain subprocess and names the file of each offence.
func TestImportsPointDown(t *testing.T) {
	root := moduleRoot(t)
	var faults []string
	pkgs := 0
	walkGo(t, root, func(path, rel string, test bool) {
		if test {
			return
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		bad, why := forbidden(pkg)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("parse %s: %v", rel, err)
		}
		pkgs++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module+"/") {
				continue
			}
			to := strings.TrimPrefix(p, module+"/")
			for _, b := range bad {
				if to == b || strings.HasPrefix(to, b+"/") {
					reason := why
					if topLevel[b] {
						reason = b + " is an assembly on top: nothing below imports it"
					}
					faults = append(faults, rel+": "+pkg+" imports "+to+" ("+reason+")")
				}
			}
		}
	})
	if pkgs == 0 {
		t.Fatal("no Go files found: is the module root right?")
	}
	sort.Strings(faults)
	for _, f := range faults {
		t.Error(f)
	}
}

// TestForbiddenRules pins the rule table itself, so that a change to it is
// a visible decision rather than a silent loosening.
func TestForbiddenRules(t *testing.T) {
	cases := []struct {
		from, to string
		ok       bool
	}{
		{"ledger/postgres", "settlement", false},
		{"ledger/postgres", "internal/pgmigrate", true},
		{"ledger/ledgerbench", "settlement/kafka", false},
		{"accounts/postgres", "deploy/pgwarn", false},
		{"accounts", "ledger", true},
		{"settlement/postgres", "ledger/postgres", true},
		{"settlement/postgres", "gateway", false},
		{"gateway", "settlement", true},
		{"gateway", "settlement/postgres", false},
		{"gateway/server", "settlement/recon", true},
		{"gateway/server", "settlement/recon/postgres", false},
		{"gateway/server", "settlement/nightly", false},
		{"gateway/server", "ledger/postgres", true},
		{"ledger/owner", "settlement/kafka", false},
		{"gateway/gatewaybench", "internal/devstack", false},
		{"internal/localpg", "ledger", false},
		{"internal/devstack", "settlement/postgres", true},
		{"internal/devstack", "cmd/fundd", false},
		{"loadtest/audit", "ledger/postgres", true},
		{"cmd/fundd", "internal/devstack", true},
	}
	for _, c := range cases {
		bad, _ := forbidden(c.from)
		ok := true
		for _, b := range bad {
			if c.to == b || strings.HasPrefix(c.to, b+"/") {
				ok = false
			}
		}
		if ok != c.ok {
			t.Errorf("%s -> %s: allowed = %v, want %v", c.from, c.to, ok, c.ok)
		}
	}
}

// functionLinesMax is the longest a hand-written function may be
// (STYLE.md: state machines as types, one method per step).
const functionLinesMax = 120

// TestFunctionsShort fails on every hand-written function (or function
// literal) longer than functionLinesMax lines. Tests and generated code
// are left out.
func TestFunctionsShort(t *testing.T) {
	root := moduleRoot(t)
	walkGo(t, root, func(path, rel string, test bool) {
		if test || strings.Contains(rel, ".pb.") {
			return
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			t.Fatalf("parse %s: %v", rel, err)
		}
		if ast.IsGenerated(f) {
			return
		}
		ast.Inspect(f, func(n ast.Node) bool {
			var body *ast.BlockStmt
			name := "func literal"
			switch x := n.(type) {
			case *ast.FuncDecl:
				body, name = x.Body, x.Name.Name
			case *ast.FuncLit:
				body = x.Body
			}
			if body == nil {
				return true
			}
			start, end := fset.Position(n.Pos()).Line, fset.Position(body.End()).Line
			if lines := end - start + 1; lines > functionLinesMax {
				t.Errorf("%s:%d: %s is %d lines (at most %d): split it into steps", rel, start, name, lines, functionLinesMax)
			}
			return true
		})
	})
}

// moduleRoot is the directory holding go.mod, two levels up from here.
func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(wd, "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// walkGo calls fn for every .go file of the module, leaving out vendored
// and third-party code and hidden directories.
func walkGo(t *testing.T, root string, fn func(path, rel string, test bool)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "third_party" || name == "vendor" || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		fn(path, filepath.ToSlash(rel), strings.HasSuffix(name, "_test.go"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
