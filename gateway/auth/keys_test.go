package auth_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fundplatform/fund/gateway/auth"
)

// RSA keys take a while to generate (more under -race): one pair per name
// for the whole package.
var (
	rsaMu   sync.Mutex
	rsaKeys = map[string]*auth.PrivateKey{}
)

func rsaKey(t *testing.T, id string) *auth.PrivateKey {
	t.Helper()
	rsaMu.Lock()
	defer rsaMu.Unlock()
	if k, ok := rsaKeys[id]; ok {
		return k
	}
	k, err := auth.GenerateKey(auth.AlgRS256, id)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[id] = k
	return k
}

func edKey(t *testing.T, id string) *auth.PrivateKey {
	t.Helper()
	k, err := auth.GenerateKey(auth.AlgEdDSA, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keySet(t *testing.T, keys ...*auth.PrivateKey) *auth.KeySet {
	t.Helper()
	var pub []auth.PublicKey
	for _, k := range keys {
		pub = append(pub, k.Public())
	}
	s, err := auth.NewKeySet(pub...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mint(t *testing.T, k *auth.PrivateKey, sub string, ttl time.Duration, now time.Time) string {
	t.Helper()
	tok, err := k.Mint(auth.Claims{Subject: sub}, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAsymmetricTokens(t *testing.T) {
	now := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	ed, rs := edKey(t, "ed-1"), rsaKey(t, "rs-1")
	v, err := auth.NewKeysVerifier(auth.Keys{HS256: key, Public: keySet(t, ed, rs)}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*auth.PrivateKey{ed, rs} {
		tok := mint(t, k, "42", time.Hour, now)
		p, err := v.Verify("Bearer " + tok)
		if err != nil || p.Customer != 42 || p.Admin() {
			t.Fatalf("%s: %+v %v", k.Alg(), p, err)
		}
		adm, _ := k.Mint(auth.Claims{Scopes: []string{auth.ScopeAdmin}}, time.Hour, now)
		if p, err := v.Verify(adm); err != nil || !p.Admin() {
			t.Fatalf("%s admin: %+v %v", k.Alg(), p, err)
		}
		expired := mint(t, k, "42", time.Minute, now.Add(-time.Hour))
		if _, err := v.Verify(expired); !errors.Is(err, auth.ErrExpired) {
			t.Fatalf("%s expired: %v", k.Alg(), err)
		}
		nobody, _ := k.Mint(auth.Claims{}, time.Hour, now)
		if _, err := v.Verify(nobody); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("%s nobody: %v", k.Alg(), err)
		}
	}
	// The shared key keeps working beside them.
	hs, _ := auth.Mint(key, auth.Claims{Subject: "7"}, time.Hour, now)
	if p, err := v.Verify(hs); err != nil || p.Customer != 7 {
		t.Fatalf("HS256 beside public keys: %+v %v", p, err)
	}
	// Without a shared key, HS256 tokens are refused.
	pubOnly, err := auth.NewKeysVerifier(auth.Keys{Public: keySet(t, ed)}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pubOnly.Verify(hs); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("HS256 without a shared key: %v", err)
	}
	if _, err := pubOnly.Verify(mint(t, ed, "1", time.Hour, now)); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewKeysVerifier(auth.Keys{}, nil); !errors.Is(err, auth.ErrKeyTooShort) {
		t.Fatalf("no keys at all: %v", err)
	}
	if _, err := auth.NewKeysVerifier(auth.Keys{HS256: []byte("short"), Public: keySet(t, ed)}, nil); !errors.Is(err, auth.ErrKeyTooShort) {
		t.Fatalf("short shared key: %v", err)
	}
}

func TestRotationAndRevocation(t *testing.T) {
	now := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	old, next := edKey(t, "2026-10"), rsaKey(t, "2026-11")
	oldTok, nextTok := mint(t, old, "1", time.Hour, now), mint(t, next, "2", time.Hour, now)

	// During the rotation both keys are in the set: both tokens pass.
	both := keySet(t, old, next)
	v, _ := auth.NewKeysVerifier(auth.Keys{Public: both}, clock)
	for _, tok := range []string{oldTok, nextTok} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("during rotation: %v", err)
		}
	}
	// The old key removed (revoked): its tokens are refused, the new ones pass.
	after, _ := auth.NewKeysVerifier(auth.Keys{Public: both.Without("2026-10")}, clock)
	if _, err := after.Verify(oldTok); !errors.Is(err, auth.ErrInvalidToken) || !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := after.Verify(nextTok); err != nil {
		t.Fatal(err)
	}
	// A key id never seen is refused the same way.
	stranger := mint(t, edKey(t, "stranger"), "1", time.Hour, now)
	if _, err := after.Verify(stranger); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	// A token that names a known key id but is signed by another key.
	impostor := mint(t, edKey(t, "2026-10"), "1", time.Hour, now)
	if _, err := v.Verify(impostor); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("impostor: %v", err)
	}
}

// signRaw signs claims with method and key under a header with kid ("" =
// none), as an attacker could.
func signRaw(t *testing.T, method jwt.SigningMethod, kid string, key any, now time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{"iss": auth.Issuer, "sub": "1", "exp": now.Add(time.Hour).Unix()})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAlgConfusionRefused(t *testing.T) {
	now := time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC)
	ed, rs := edKey(t, "ed"), rsaKey(t, "rs")
	set := keySet(t, ed, rs)
	v, _ := auth.NewKeysVerifier(auth.Keys{HS256: key, Public: set}, func() time.Time { return now })

	rsPub := rs.Public().Key.(*rsa.PublicKey)
	edPub := ed.Public().Key.(ed25519.PublicKey)
	jwks, _ := set.MarshalJWKS()
	rsaModulus := rsPub.N.Bytes()
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"ed","typ":"JWT"}`))
	body := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"fundplatform","sub":"1","exp":9999999999}`))
	for name, tok := range map[string]string{
		// The classic: an HMAC whose secret is the public key, naming its kid.
		"HS256 keyed by the RSA key":     signRaw(t, jwt.SigningMethodHS256, "rs", rsaModulus, now),
		"HS256 keyed by the Ed25519 key": signRaw(t, jwt.SigningMethodHS256, "ed", []byte(edPub), now),
		"HS256 keyed by the JWKS":        signRaw(t, jwt.SigningMethodHS256, "rs", jwks, now),
		// Even with the right shared key, an HS256 token may not name a kid.
		"HS256 with a kid": signRaw(t, jwt.SigningMethodHS256, "ed", key, now),
		// An asymmetric key used with the other algorithm's kid.
		"RS256 under the EdDSA kid": signRaw(t, jwt.SigningMethodRS256, "ed", mustSigner(t, rs), now),
		"EdDSA without a kid":       signRaw(t, jwt.SigningMethodEdDSA, "", mustSigner(t, ed), now),
		"RS256 without a kid":       signRaw(t, jwt.SigningMethodRS256, "", mustSigner(t, rs), now),
		"RS384 under the RSA kid":   signRaw(t, jwt.SigningMethodRS384, "rs", mustSigner(t, rs), now),
		"PS256 under the RSA kid":   signRaw(t, jwt.SigningMethodPS256, "rs", mustSigner(t, rs), now),
		"alg none with a kid":       hdr + "." + body + ".",
	} {
		if _, err := v.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
		}
	}
	// The same signers with their own algorithm and kid pass: the refusals
	// above are for the confusion, not the signing.
	if _, err := v.Verify(signRaw(t, jwt.SigningMethodRS256, "rs", mustSigner(t, rs), now)); err != nil {
		t.Fatal(err)
	}
	// Without public keys an HS256 token's kid is ignored, as before.
	hsOnly, _ := auth.NewVerifier(key, func() time.Time { return now })
	if _, err := hsOnly.Verify(signRaw(t, jwt.SigningMethodHS256, "anything", key, now)); err != nil {
		t.Fatal(err)
	}
}

// mustSigner digs the private key out through its PEM form, as a holder of
// the key file would.
func mustSigner(t *testing.T, k *auth.PrivateKey) any {
	t.Helper()
	p, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if k.Alg() == auth.AlgEdDSA {
		s, err := jwt.ParseEdPrivateKeyFromPEM(p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, err := jwt.ParseRSAPrivateKeyFromPEM(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWKSRoundTripAndParse(t *testing.T) {
	ed, rs := edKey(t, "a"), rsaKey(t, "b")
	doc, err := keySet(t, ed, rs).MarshalJWKS()
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.IDs(), ","); got != "a,b" {
		t.Fatalf("ids %s", got)
	}
	for _, k := range []*auth.PrivateKey{ed, rs} {
		pk, err := s.PublicKey(k.ID())
		if err != nil || pk.Alg != k.Alg() || !pk.Key.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public().Key) {
			t.Fatalf("%s: %+v %v", k.ID(), pk, err)
		}
	}
	// Keys of kinds not used here are skipped; the usable ones stay.
	var d struct {
		Keys []map[string]any `json:"keys"`
	}
	_ = json.Unmarshal(doc, &d)
	d.Keys = append(d.Keys,
		map[string]any{"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
		map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
		map[string]any{"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
		map[string]any{"kty": "OKP", "kid": "x", "crv": "X25519", "x": "AA"})
	mixed, _ := json.Marshal(d)
	if s, err := auth.ParseJWKS(mixed); err != nil || len(s.IDs()) != 2 {
		t.Fatalf("mixed document: %v %v", s, err)
	}
	edJWK := d.Keys[0]
	with := func(k map[string]any, kv ...string) []byte {
		m := map[string]any{}
		for a, b := range k {
			m[a] = b
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		b, _ := json.Marshal(map[string]any{"keys": []any{m}})
		return b
	}
	twice := func(k map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"keys": []any{k, k}})
		return b
	}
	short := base64.RawURLEncoding.EncodeToString(make([]byte, 128)) // a 1024-bit modulus
	for name, doc := range map[string][]byte{
		"not json":      []byte("{"),
		"no keys":       []byte(`{"keys":[]}`),
		"only EC":       []byte(`{"keys":[{"kty":"EC","kid":"e","crv":"P-256"}]}`),
		"no kid":        with(edJWK, "kid", ""),
		"bad x":         with(edJWK, "x", "***"),
		"short x":       with(edJWK, "x", "AAAA"),
		"short modulus": []byte(`{"keys":[{"kty":"RSA","kid":"r","n":"` + short + `","e":"AQAB"}]}`),
		"kid twice":     twice(edJWK),
	} {
		if _, err := auth.ParseJWKS(doc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPrivateKeyFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	priv, jwksFile := filepath.Join(dir, "k1.pem"), filepath.Join(dir, "jwks.json")
	k1 := edKey(t, "") // the id is the key's thumbprint
	if tp, _ := auth.Thumbprint(k1.Public().Key); k1.ID() != tp || len(tp) != 43 {
		t.Fatalf("id %q, thumbprint %q", k1.ID(), tp)
	}
	if err := auth.WriteKeyPair(k1, priv, jwksFile); err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteKeyPair(k1, priv, jwksFile); err == nil {
		t.Fatal("overwrote a private key file")
	}
	if fi, _ := os.Stat(priv); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode())
	}
	// A second pair goes beside the first: the rotation.
	k2 := rsaKey(t, "rs-2")
	if err := auth.WriteKeyPair(k2, filepath.Join(dir, "k2.pem"), jwksFile); err != nil {
		t.Fatal(err)
	}
	set, err := auth.LoadJWKS(jwksFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(set.IDs(), ","); got != strings.Join([]string{k1.ID(), "rs-2"}, ",") && got != "rs-2,"+k1.ID() {
		t.Fatalf("ids %s", got)
	}
	// The key read back (under its thumbprint again) signs tokens the set
	// verifies; given another id, its tokens name that id.
	loaded, err := auth.LoadPrivateKey(priv, "")
	if err != nil || loaded.ID() != k1.ID() || loaded.Alg() != auth.AlgEdDSA {
		t.Fatalf("loaded %v %v", loaded, err)
	}
	v, _ := auth.NewKeysVerifier(auth.Keys{Public: set}, nil)
	if _, err := v.Verify(mint(t, loaded, "5", time.Hour, now)); err != nil {
		t.Fatal(err)
	}
	renamed, _ := auth.LoadPrivateKey(priv, "other")
	if _, err := v.Verify(mint(t, renamed, "5", time.Hour, now)); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("renamed: %v", err)
	}
	// Not PKCS#8, not PEM.
	pkcs1 := filepath.Join(dir, "pkcs1.pem")
	_ = os.WriteFile(pkcs1, []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), 0o600)
	if _, err := auth.LoadPrivateKey(pkcs1, ""); err == nil || !strings.Contains(err.Error(), "PKCS#8") {
		t.Fatalf("pkcs1: %v", err)
	}
	if _, err := auth.LoadPrivateKey(jwksFile, ""); err == nil {
		t.Fatal("a JWKS taken for a private key")
	}
	if _, err := auth.GenerateKey("HS256", ""); err == nil {
		t.Fatal("generated an HS256 key pair")
	}
}
