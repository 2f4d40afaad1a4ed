package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestMintVerify(t *testing.T) {
	now := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	v, err := auth.NewVerifier(key, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Mint(key, auth.Claims{Subject: "42"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify("Bearer " + tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Customer != 42 || p.Admin() || !p.MayActOn(42) || p.MayActOn(43) {
		t.Fatalf("principal %+v", p)
	}
	adm, _ := auth.Mint(key, auth.Claims{Scopes: []string{auth.ScopeAdmin}}, time.Hour, now)
	p, err = v.Verify(adm)
	if err != nil || !p.Admin() || !p.MayActOn(7) {
		t.Fatalf("admin %+v %v", p, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	v, _ := auth.NewVerifier(key, func() time.Time { return now })
	good, _ := auth.Mint(key, auth.Claims{Subject: "42"}, time.Hour, now)
	expired, _ := auth.Mint(key, auth.Claims{Subject: "42"}, time.Minute, now.Add(-time.Hour))
	forged, _ := auth.Mint([]byte("another-key-another-key-another-k"), auth.Claims{Subject: "42"}, time.Hour, now)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	noneAlg := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiI0MiIsImlzcyI6ImZ1bmRwbGF0Zm9ybSIsImV4cCI6OTk5OTk5OTk5OX0."
	nobody, _ := auth.Mint(key, auth.Claims{}, time.Hour, now)
	for name, c := range map[string]struct {
		tok  string
		want error
	}{
		"empty":    {"", auth.ErrNoToken},
		"bearer":   {"Bearer ", auth.ErrNoToken},
		"expired":  {expired, auth.ErrExpired},
		"forged":   {forged, auth.ErrInvalidToken},
		"tampered": {tampered, auth.ErrInvalidToken},
		"alg none": {noneAlg, auth.ErrInvalidToken},
		"garbage":  {"not.a.jwt", auth.ErrInvalidToken},
		"nobody":   {nobody, auth.ErrInvalidToken},
	} {
		if _, err := v.Verify(c.tok); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func TestMintRejects(t *testing.T) {
	now := time.Now()
	if _, err := auth.Mint([]byte("short"), auth.Claims{Subject: "1"}, time.Hour, now); !errors.Is(err, auth.ErrKeyTooShort) {
		t.Errorf("short key: %v", err)
	}
	for _, sub := range []string{"0", "-3", "abc", "1.5"} {
		if _, err := auth.Mint(key, auth.Claims{Subject: sub}, time.Hour, now); err == nil {
			t.Errorf("subject %q accepted", sub)
		}
	}
	if _, err := auth.Mint(key, auth.Claims{Subject: "1"}, 0, now); err == nil {
		t.Error("zero ttl accepted")
	}
}
