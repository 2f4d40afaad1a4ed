package postgres_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// ledgerTables are the tables only ledger/postgres writes. The ledger's
// accounts table is the only table of that name in the schema (the
// accounts package's are customers, orders, customer_income, fund_yields
// and trading_holidays), so it is included.
var ledgerTables = []string{"transfers", "transfer_ids", "pending_transfers", "ledger_outbox", "ledger_shards", "accounts"}

// writeSQL matches a statement that writes one of ledgerTables, or a call
// of the ledger's fence, in SQL text. Keywords are matched in capitals, as
// the code writes its SQL, so that prose such as "update accounts" in an
// error message is not taken for SQL.
var writeSQL = regexp.MustCompile(`(?:(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?` +
	`(?:public\.)?"?(` + strings.Join(ledgerTables, "|") + `)"?\b)|(ledger_fence\s*\()`)

// TestOneWriter: only ledger/postgres writes the ledger's tables (issue
// 14). It reads every non-test Go file of the module outside ledger/ and
// fails, naming file and line, on a string literal holding SQL that writes
// them or calls ledger_fence, and on a pgx.Identifier naming one of them
// (the table of a COPY).
func TestOneWriter(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	var files int
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			name := d.Name()
			if rel == "ledger" || name == "testdata" || name == "node_modules" || (strings.HasPrefix(name, ".") && rel != ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		for _, w := range ledgerWrites(t, path) {
			t.Errorf("%s:%d: writes the ledger's tables outside ledger/ (only ledger/postgres may): %s", rel, w.line, w.what)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no Go files scanned")
	}
}

// TestOneWriterFindsTheLedgersOwnWrites keeps the scan honest: run over
// ledger/postgres itself, it must find writes of every table.
func TestOneWriterFindsTheLedgersOwnWrites(t *testing.T) {
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		for _, w := range ledgerWrites(t, p) {
			found[w.table] = true
		}
	}
	for _, table := range append(ledgerTables, "ledger_fence") {
		if !found[table] {
			t.Errorf("the scan finds no write of %s in ledger/postgres", table)
		}
	}
}

type ledgerWrite struct {
	line  int
	table string
	what  string
}

// ledgerWrites parses a Go file and returns the ledger writes in its string
// literals and pgx.Identifier literals.
func ledgerWrites(t *testing.T, path string) []ledgerWrite {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	var out []ledgerWrite
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			sel, ok := n.Type.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Identifier" {
				return true
			}
			for _, e := range n.Elts {
				if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if name, err := strconv.Unquote(lit.Value); err == nil && isLedgerTable(name) {
						out = append(out, ledgerWrite{line: fset.Position(lit.Pos()).Line, table: name,
							what: "pgx.Identifier{" + lit.Value + "}"})
					}
				}
			}
		case *ast.BasicLit:
			if n.Kind != token.STRING {
				return true
			}
			for _, m := range writeSQL.FindAllStringSubmatchIndex(n.Value, -1) {
				table := "ledger_fence"
				if m[2] >= 0 {
					table = n.Value[m[2]:m[3]]
				}
				line := fset.Position(n.Pos()).Line + strings.Count(n.Value[:m[0]], "\n")
				what := strings.Join(strings.Fields(n.Value[m[0]:m[1]]), " ")
				out = append(out, ledgerWrite{line: line, table: table, what: what})
			}
		}
		return true
	})
	return out
}

func isLedgerTable(name string) bool {
	for _, t := range ledgerTables {
		if name == t {
			return true
		}
	}
	return false
}
