package auth

import (
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestCachedVerifier(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	var nowNs atomic.Int64
	nowNs.Store(time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, nowNs.Load()) }
	v, err := NewVerifier(key, now)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCachedVerifier(v, 3, now)
	tok, err := Mint(key, Claims{Subject: "7"}, time.Minute, now())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p, err := c.Verify(tok)
		if err != nil || p.Customer != 7 {
			t.Fatalf("verify: %+v %v", p, err)
		}
	}
	if c.Len() != 1 {
		t.Fatalf("%d tokens kept, want 1", c.Len())
	}
	// Forged tokens are refused every time and never kept.
	forged, _ := Mint([]byte("ffffffffffffffffffffffffffffffff"), Claims{Subject: "7"}, time.Minute, now())
	for range 2 {
		if _, err := c.Verify(forged); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("forged: %v", err)
		}
	}
	if c.Len() != 1 {
		t.Fatalf("a forged token was kept")
	}
	// Past its expiry (and the verifier's leeway) a kept token is refused.
	nowNs.Add(int64(time.Minute + 10*time.Second))
	if _, err := c.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if c.Len() != 0 {
		t.Fatalf("an expired token stayed")
	}
	// Bounded.
	for i := 1; i <= 10; i++ {
		tk, _ := Mint(key, Claims{Subject: strconv.Itoa(i)}, time.Hour, now())
		if _, err := c.Verify(tk); err != nil {
			t.Fatal(err)
		}
	}
	if c.Len() != 3 {
		t.Fatalf("%d tokens kept, want at most 3", c.Len())
	}
}
