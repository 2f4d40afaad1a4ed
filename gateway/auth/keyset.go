package auth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"sort"
)

// Signature algorithms ("alg") the platform signs and verifies with. "none"
// and every other algorithm are refused.
const (
	AlgHS256 = "HS256" // shared key (dev, tests): Mint
	AlgEdDSA = "EdDSA" // Ed25519 key pair: PrivateKey.Mint
	AlgRS256 = "RS256" // RSA key pair (>= 2048 bits): PrivateKey.Mint
)

// RSABitsMin is the smallest RSA modulus accepted, as NIST asks since 2013.
const RSABitsMin = 2048

// KeySetKeysMax bounds the keys of one set (an identity provider publishes
// a handful: the current key, the next and perhaps the previous one).
const KeySetKeysMax = 100

// JWKSBytesMax bounds a JWKS document, fetched or read (a JWK is a few
// hundred bytes; KeySetKeysMax RSA keys fit ten times over).
const JWKSBytesMax = 256 << 10

// ErrUnknownKey is a token's key id that names no key of the set: a key
// that was never there, or one removed (revoked). It comes wrapped in
// ErrInvalidToken from Verify.
var ErrUnknownKey = errors.New("unknown key id")

// PublicKey verifies the tokens signed by its private half. ID is the key
// id ("kid") a token names in its header; Alg is AlgEdDSA with an
// ed25519.PublicKey or AlgRS256 with an *rsa.PublicKey.
type PublicKey struct {
	ID  string
	Alg string
	Key crypto.PublicKey
}

// check reports whether k is well formed: an id, and a key of its alg.
func (k PublicKey) check() error {
	if k.ID == "" {
		return errors.New("public key without a key id")
	}
	switch key := k.Key.(type) {
	case ed25519.PublicKey:
		if k.Alg != AlgEdDSA || len(key) != ed25519.PublicKeySize {
			return fmt.Errorf("key %q: an Ed25519 key is for %s (32 bytes)", k.ID, AlgEdDSA)
		}
	case *rsa.PublicKey:
		if k.Alg != AlgRS256 {
			return fmt.Errorf("key %q: an RSA key is for %s", k.ID, AlgRS256)
		}
		if key.N == nil || key.N.BitLen() < RSABitsMin || key.E < 3 || key.E%2 == 0 {
			return fmt.Errorf("key %q: RSA modulus under %d bits or bad exponent", k.ID, RSABitsMin)
		}
	default:
		return fmt.Errorf("key %q: %T is neither Ed25519 nor RSA", k.ID, k.Key)
	}
	return nil
}

// equal reports whether k and o are the same key under the same id.
func (k PublicKey) equal(o PublicKey) bool {
	if k.ID != o.ID || k.Alg != o.Alg {
		return false
	}
	e, ok := k.Key.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(o.Key)
}

// KeySource gives the public key a token's key id names. *KeySet is the
// fixed one; *JWKSSource follows a JWKS document that changes. A source is
// safe for concurrent use.
type KeySource interface {
	// PublicKey returns the key of id, or ErrUnknownKey.
	PublicKey(id string) (PublicKey, error)
}

// KeySet is a fixed set of public keys by key id. During a rotation it holds
// both the old and the new key; a revoked key is one no longer in it. It is
// never changed once built, so it is safe for concurrent use.
type KeySet struct {
	keys map[string]PublicKey
}

// NewKeySet checks keys (ids distinct, each key of its alg, RSA >= 2048
// bits, at most KeySetKeysMax) and returns their set.
func NewKeySet(keys ...PublicKey) (*KeySet, error) {
	if len(keys) > KeySetKeysMax {
		return nil, fmt.Errorf("%d keys: at most %d", len(keys), KeySetKeysMax)
	}
	s := &KeySet{keys: make(map[string]PublicKey, len(keys))}
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("key id %q twice", k.ID)
		}
		s.keys[k.ID] = k
	}
	return s, nil
}

// PublicKey returns the key of id, or ErrUnknownKey.
func (s *KeySet) PublicKey(id string) (PublicKey, error) {
	if k, ok := s.keys[id]; ok {
		return k, nil
	}
	return PublicKey{}, fmt.Errorf("%w %q", ErrUnknownKey, id)
}

// IDs returns the key ids, sorted.
func (s *KeySet) IDs() []string {
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Keys returns the keys, sorted by id.
func (s *KeySet) Keys() []PublicKey {
	ks := make([]PublicKey, 0, len(s.keys))
	for _, id := range s.IDs() {
		ks = append(ks, s.keys[id])
	}
	return ks
}

// With returns the set with k added (or replacing the key of its id).
func (s *KeySet) With(k PublicKey) (*KeySet, error) {
	ks := slices.DeleteFunc(s.Keys(), func(o PublicKey) bool { return o.ID == k.ID })
	return NewKeySet(append(ks, k)...)
}

// Without returns the set less the key of id: how a key is revoked.
func (s *KeySet) Without(id string) *KeySet {
	n := &KeySet{keys: make(map[string]PublicKey, len(s.keys))}
	for kid, k := range s.keys {
		if kid != id {
			n.keys[kid] = k
		}
	}
	return n
}

// jwk is one key of a JWKS document (RFC 7517), the members this package
// reads and writes: OKP keys on curve Ed25519 (RFC 8037) and RSA keys.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

type jwksDoc struct {
	Keys []jwk `json:"keys"`
}

var b64 = base64.RawURLEncoding

// ParseJWKS reads a JWKS document. Keys this platform does not verify with
// (another use than "sig", other key types or curves, other algorithms such
// as RS512 or PS256) are skipped, as an identity provider may publish them
// beside its signing keys; a malformed key of a kind it does use (no kid,
// bad encoding, a short RSA modulus, a kid twice) fails the whole document,
// and so does a document without a usable key.
func ParseJWKS(doc []byte) (*KeySet, error) {
	s, err := parseJWKS(doc)
	if err != nil {
		return nil, err
	}
	if len(s.keys) == 0 {
		return nil, errors.New("jwks: no Ed25519 (EdDSA) or RSA (RS256) signing key")
	}
	return s, nil
}

// parseJWKS is ParseJWKS that lets a document have no usable key.
func parseJWKS(doc []byte) (*KeySet, error) {
	var d jwksDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if len(d.Keys) > KeySetKeysMax {
		return nil, fmt.Errorf("jwks: %d keys: at most %d", len(d.Keys), KeySetKeysMax)
	}
	var keys []PublicKey
	for i, j := range d.Keys {
		k, ok, err := j.publicKey()
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d (%q): %w", i, j.Kid, err)
		}
		if ok {
			keys = append(keys, k)
		}
	}
	s, err := NewKeySet(keys...)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return s, nil
}

// publicKey decodes j; ok is false for a key of a kind not used here.
func (j jwk) publicKey() (k PublicKey, ok bool, err error) {
	if j.Use != "" && j.Use != "sig" {
		return PublicKey{}, false, nil
	}
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519" && (j.Alg == "" || j.Alg == AlgEdDSA || j.Alg == "Ed25519"):
		x, err := b64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return PublicKey{}, false, errors.New(`"x" is not a base64url Ed25519 key`)
		}
		k = PublicKey{ID: j.Kid, Alg: AlgEdDSA, Key: ed25519.PublicKey(x)}
	case j.Kty == "RSA" && (j.Alg == "" || j.Alg == AlgRS256):
		n, err1 := b64.DecodeString(j.N)
		e, err2 := b64.DecodeString(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return PublicKey{}, false, errors.New(`"n" or "e" is not base64url`)
		}
		exp := new(big.Int).SetBytes(e).Int64()
		k = PublicKey{ID: j.Kid, Alg: AlgRS256, Key: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}}
	default:
		return PublicKey{}, false, nil
	}
	if err := k.check(); err != nil {
		return PublicKey{}, false, err
	}
	return k, true, nil
}

// toJWK encodes k as a JWK with use "sig" and its alg.
func (k PublicKey) toJWK() jwk {
	switch key := k.Key.(type) {
	case ed25519.PublicKey:
		return jwk{Kty: "OKP", Kid: k.ID, Use: "sig", Alg: AlgEdDSA, Crv: "Ed25519", X: b64.EncodeToString(key)}
	case *rsa.PublicKey:
		return jwk{Kty: "RSA", Kid: k.ID, Use: "sig", Alg: AlgRS256,
			N: b64.EncodeToString(key.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(key.E)).Bytes())}
	}
	return jwk{Kid: k.ID}
}

// MarshalJWKS returns the set as a JWKS document, what an identity provider
// serves and what LoadJWKS reads.
func (s *KeySet) MarshalJWKS() ([]byte, error) {
	d := jwksDoc{Keys: []jwk{}}
	for _, k := range s.Keys() {
		d.Keys = append(d.Keys, k.toJWK())
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// LoadJWKS reads a JWKS document from file (at most JWKSBytesMax).
func LoadJWKS(file string) (*KeySet, error) {
	b, err := readFileMax(file, JWKSBytesMax)
	if err != nil {
		return nil, err
	}
	s, err := ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// Thumbprint is the RFC 7638 thumbprint of a key (SHA-256, base64url): the
// key id given to a key generated without one. It depends on the key only,
// so the same key gets the same id wherever it is computed.
func Thumbprint(key crypto.PublicKey) (string, error) {
	// The required members in lexical order, no spaces (RFC 7638 §3).
	var m string
	switch k := key.(type) {
	case ed25519.PublicKey:
		m = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":%q}`, b64.EncodeToString(k))
	case *rsa.PublicKey:
		m = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`,
			b64.EncodeToString(big.NewInt(int64(k.E)).Bytes()), b64.EncodeToString(k.N.Bytes()))
	default:
		return "", fmt.Errorf("thumbprint: %T is neither Ed25519 nor RSA", key)
	}
	sum := sha256.Sum256([]byte(m))
	return b64.EncodeToString(sum[:]), nil
}

// readFileMax reads file, refusing one larger than max bytes.
func readFileMax(file string, max int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, max+1)); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if int64(buf.Len()) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, max)
	}
	return buf.Bytes(), nil
}
