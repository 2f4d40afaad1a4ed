package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fundplatform/fund/gateway/auth"
)

// --jwks-file puts the identity provider's keys in the gateway's config:
// its tokens verify, and without a shared key only they are accepted.
func TestGatewayFlagsIdentityProviderKeys(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(auth.EnvKey, "")
	k, err := auth.GenerateKey("EdDSA", "idp-1")
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, "jwks.json")
	if err := auth.WriteKeyPair(k, filepath.Join(dir, "idp.pem"), jwks); err != nil {
		t.Fatal(err)
	}
	g := gatewayFlags{jwksFile: jwks}
	src, err := g.publicKeys(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if g.cfg.JWTKeys == nil {
		t.Fatal("the gateway's config has no public keys")
	}
	shared, err := g.sharedKey()
	if err != nil || shared != nil {
		t.Fatalf("shared key with only --jwks-file: %v, %v; want none", shared, err)
	}
	v, err := auth.NewKeysVerifier(auth.Keys{Public: g.cfg.JWTKeys}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Mint(auth.Claims{Subject: "7"}, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify("Bearer " + tok); err != nil || p.Customer != 7 {
		t.Fatalf("provider's token: %+v, %v", p, err)
	}
	other, _ := auth.GenerateKey("EdDSA", "idp-2")
	tok, _ = other.Mint(auth.Claims{Subject: "7"}, time.Minute, time.Now())
	if _, err := v.Verify("Bearer " + tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("token of a key not in the set: %v, want ErrInvalidToken", err)
	}

	both := gatewayFlags{jwksFile: jwks, jwksURL: "https://idp.example/jwks"}
	if _, err := both.publicKeys(context.Background(), nil); err == nil {
		t.Fatal("--jwks-file with --jwks-url accepted")
	}
	missing := gatewayFlags{jwksFile: filepath.Join(dir, "none.json")}
	if _, err := missing.publicKeys(context.Background(), nil); err == nil {
		t.Fatal("a JWKS file that cannot be read accepted")
	}
}
