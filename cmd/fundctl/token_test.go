package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fundplatform/fund/gateway/auth"
)

// runToken runs `fundctl token args...` and returns its stdout and stderr.
func runToken(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newTokenCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return strings.TrimSpace(out.String()), errOut.String(), err
}

func TestTokenCmd(t *testing.T) {
	shared := strings.Repeat("s", auth.KeyLenMin)
	t.Setenv(auth.EnvKey, shared)
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	edPEM, rsPEM := filepath.Join(dir, "ed.pem"), filepath.Join(dir, "rs.pem")

	// The HS256 default is unchanged.
	tok, _, err := runToken(t, "--customer", "42")
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := auth.NewVerifier([]byte(shared), nil)
	if p, err := hs.Verify(tok); err != nil || p.Customer != 42 {
		t.Fatalf("HS256: %+v %v", p, err)
	}

	// A key pair, then a token with it; a second pair for the rotation,
	// minting at once.
	if _, stderr, err := runToken(t, "--new-key", "EdDSA", "--kid", "k1", "--private-key-file", edPEM, "--jwks-file", jwks); err != nil || !strings.Contains(stderr, "k1") {
		t.Fatalf("new key: %v %q", err, stderr)
	}
	edTok, _, err := runToken(t, "--customer", "42", "--private-key-file", edPEM, "--kid", "k1")
	if err != nil {
		t.Fatal(err)
	}
	rsTok, _, err := runToken(t, "--new-key", "rs256", "--kid", "k2", "--private-key-file", rsPEM, "--jwks-file", jwks, "--admin")
	if err != nil {
		t.Fatal(err)
	}
	set, err := auth.LoadJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewKeysVerifier(auth.Keys{Public: set}, nil)
	if p, err := v.Verify(edTok); err != nil || p.Customer != 42 {
		t.Fatalf("EdDSA: %+v %v", p, err)
	}
	if p, err := v.Verify(rsTok); err != nil || !p.Admin() {
		t.Fatalf("RS256: %+v %v", p, err)
	}
	// Without --kid the token names the key's thumbprint, not in this set.
	thumbTok, _, err := runToken(t, "--customer", "1", "--private-key-file", edPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(thumbTok); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("thumbprint kid: %v", err)
	}

	for _, args := range [][]string{
		{},
		{"--customer", "-1"},
		{"--customer", "1", "--kid", "k1"},
		{"--customer", "1", "--private-key-file", edPEM, "--jwks-file", jwks},
		{"--new-key", "EdDSA", "--private-key-file", filepath.Join(dir, "x.pem")},
		{"--new-key", "HS256", "--private-key-file", filepath.Join(dir, "x.pem"), "--jwks-file", jwks},
		{"--new-key", "EdDSA", "--private-key-file", edPEM, "--jwks-file", jwks}, // exists
		{"--customer", "1", "--private-key-file", filepath.Join(dir, "missing.pem")},
	} {
		if _, _, err := runToken(t, args...); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}
