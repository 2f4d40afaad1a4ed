package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Each table has one writing package (DESIGN.md, Layers; issue 14): the
// package whose migrations create it (a directory holding migrations/*.sql
// is the owner of the tables and functions those files create). Only the
// owner's code, under its directory, may write them; everyone else goes
// through the owner's API (ledger/postgres's Commit and InShard,
// accounts/postgres's RecordIncomeTx and CompleteOrdersTx, ...). Writing
// means SQL in a Go string literal that inserts, updates, deletes, copies
// into or truncates the table (or calls one of the owner's functions, such
// as ledger_fence), and a pgx.Identifier naming the table (the table of a
// COPY). Test files are left out: tests set up and inspect any table.

// wantOwners pins the owners the rule exists for, so that a migration moved
// or a parser that finds nothing cannot make the check pass vacuously; the
// scan of each owner's own code must also find its writes of these.
var wantOwners = map[string]string{
	"transfers": "ledger/postgres", "transfer_ids": "ledger/postgres", "pending_transfers": "ledger/postgres",
	"ledger_outbox": "ledger/postgres", "ledger_shards": "ledger/postgres", "accounts": "ledger/postgres",
	"ledger_fence": "ledger/postgres",
	"customers":    "accounts/postgres", "orders": "accounts/postgres", "customer_income": "accounts/postgres",
	"fund_yields": "accounts/postgres", "trading_holidays": "accounts/postgres",
	"settlement_runs": "settlement/postgres", "settlement_cuts": "settlement/postgres",
	"settlement_steps": "settlement/postgres", "settlement_movements": "settlement/postgres",
	"recon_events": "settlement/recon/postgres", "recon_day_totals": "settlement/recon/postgres",
	"recon_account_totals": "settlement/recon/postgres", "recon_sagas": "settlement/recon/postgres",
	"recon_breaks": "settlement/recon/postgres", "recon_statements": "settlement/recon/postgres",
	"test_clock": "internal/clock/pgclock", "test_clock_moves": "internal/clock/pgclock",
}

// createSQL finds what a migration creates: tables (not the partitions a
// function creates through format(), whose name is a placeholder) and
// functions.
var createSQL = regexp.MustCompile(`(?i)\bCREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|FUNCTION)\s+(?:IF\s+NOT\s+EXISTS\s+)?` +
	`(?:public\.)?"?([a-z_][a-z0-9_]*)"?`)

// writeSQL matches a statement that writes a table, in SQL text. Keywords
// are matched in capitals, as the code writes its SQL, so that prose such
// as "update accounts" in an error message is not taken for SQL.
var writeSQL = regexp.MustCompile(`(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY|TRUNCATE(?:\s+TABLE)?|MERGE\s+INTO)\s+` +
	`(?:ONLY\s+)?(?:public\.)?"?([a-z_][a-z0-9_]*)"?\b`)

// callSQL matches a function call in SQL text.
var callSQL = regexp.MustCompile(`\b([a-z_][a-z0-9_]*)\s*\(`)

// owned is what the migrations create: tables and functions by name, each
// with the module-relative directory of its owner.
type owned struct{ tables, funcs map[string]string }

// TestOneWriter fails, naming file and line, on every write of a table
// (or call of a function) outside the package whose migrations create it.
func TestOneWriter(t *testing.T) {
	root := moduleRoot(t)
	own := migrationOwners(t, root)
	for name, want := range wantOwners {
		got := own.tables[name]
		if got == "" {
			got = own.funcs[name]
		}
		if got != want {
			t.Errorf("%s is created by the migrations of %q, want %q", name, got, want)
		}
	}
	var files int
	walkGo(t, root, func(p, rel string, test bool) {
		if test {
			return
		}
		files++
		dir := path.Dir(rel)
		for _, w := range sqlWrites(t, p, own) {
			if dir != w.owner && !strings.HasPrefix(dir, w.owner+"/") {
				t.Errorf("%s:%d: writes %s, whose only writer is %s: %s", rel, w.line, w.name, w.owner, w.what)
			}
		}
	})
	if files == 0 {
		t.Fatal("no Go files scanned")
	}
}

// TestOneWriterFindsTheOwnersWrites keeps the scan honest: run over each
// owner's own code, it must find a write of every table pinned to it.
func TestOneWriterFindsTheOwnersWrites(t *testing.T) {
	root := moduleRoot(t)
	own := migrationOwners(t, root)
	found := map[string]bool{}
	walkGo(t, root, func(p, rel string, test bool) {
		if test {
			return
		}
		for _, w := range sqlWrites(t, p, own) {
			if path.Dir(rel) == w.owner {
				found[w.name] = true
			}
		}
	})
	for name, owner := range wantOwners {
		if !found[name] {
			t.Errorf("the scan finds no write of %s in %s", name, owner)
		}
	}
}

// migrationOwners reads every migrations/*.sql of the module and returns
// who creates what. A name created by two packages is an error: it could
// not have one writer.
func migrationOwners(t *testing.T, root string) owned {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && hidden(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".sql") && filepath.Base(filepath.Dir(p)) == "migrations" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	own := owned{tables: map[string]string{}, funcs: map[string]string{}}
	for _, f := range files {
		rel, err := filepath.Rel(root, filepath.Dir(filepath.Dir(f)))
		if err != nil {
			t.Fatal(err)
		}
		owner := filepath.ToSlash(rel)
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range createSQL.FindAllStringSubmatch(string(text), -1) {
			into := own.tables
			if strings.EqualFold(m[1], "FUNCTION") {
				into = own.funcs
			}
			name := strings.ToLower(m[2])
			if prev, ok := into[name]; ok && prev != owner {
				t.Errorf("%s is created by the migrations of both %s and %s", name, prev, owner)
			}
			into[name] = owner
		}
	}
	if len(own.tables) == 0 {
		t.Fatal("no tables found in the migrations")
	}
	return own
}

// hidden says whether a directory is one walkGo leaves out.
func hidden(name string) bool {
	return strings.HasPrefix(name, ".") || name == "third_party" || name == "vendor" || name == "testdata" ||
		name == "node_modules"
}

type sqlWrite struct {
	line  int
	name  string // table or function
	owner string
	what  string
}

// sqlWrites parses a Go file and returns the writes of owned tables (and
// calls of owned functions) in its string literals and pgx.Identifier
// literals.
func sqlWrites(t *testing.T, p string, own owned) []sqlWrite {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", p, err)
	}
	var out []sqlWrite
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			if sel, ok := n.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Identifier" {
				return true
			}
			for _, e := range n.Elts {
				lit, ok := e.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if name, err := strconv.Unquote(lit.Value); err == nil && own.tables[name] != "" {
					out = append(out, sqlWrite{line: fset.Position(lit.Pos()).Line, name: name,
						owner: own.tables[name], what: "pgx.Identifier{" + lit.Value + "}"})
				}
			}
		case *ast.BasicLit:
			if n.Kind == token.STRING {
				out = append(out, literalWrites(fset, n, writeSQL, own.tables)...)
				out = append(out, literalWrites(fset, n, callSQL, own.funcs)...)
			}
		}
		return true
	})
	return out
}

// literalWrites returns the matches of re in a string literal whose first
// group names something in owners.
func literalWrites(fset *token.FileSet, lit *ast.BasicLit, re *regexp.Regexp, owners map[string]string) []sqlWrite {
	var out []sqlWrite
	for _, m := range re.FindAllStringSubmatchIndex(lit.Value, -1) {
		name := lit.Value[m[2]:m[3]]
		owner := owners[name]
		if owner == "" {
			continue
		}
		line := fset.Position(lit.Pos()).Line + strings.Count(lit.Value[:m[0]], "\n")
		what := strings.Join(strings.Fields(lit.Value[m[0]:m[1]]), " ")
		out = append(out, sqlWrite{line: line, name: name, owner: owner, what: what})
	}
	return out
}
