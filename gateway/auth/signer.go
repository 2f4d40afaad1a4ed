package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// PrivateKeyBytesMax bounds a private key file (a 4096-bit RSA key in PEM is
// about 3.3 KB).
const PrivateKeyBytesMax = 64 << 10

// PrivateKey signs tokens that a gateway verifies with its public half,
// found by ID (the "kid" of the tokens it mints). An identity provider holds
// such keys; `fundctl token --private-key-file` uses one for tests and
// rehearsals.
type PrivateKey struct {
	id     string
	alg    string
	signer crypto.Signer // ed25519.PrivateKey or *rsa.PrivateKey
}

// GenerateKey makes a new key pair for alg (AlgEdDSA, or AlgRS256 with a
// 2048-bit modulus). An empty id is the key's thumbprint.
func GenerateKey(alg, id string) (*PrivateKey, error) {
	var signer crypto.Signer
	switch alg {
	case AlgEdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		signer = priv
	case AlgRS256:
		priv, err := rsa.GenerateKey(rand.Reader, RSABitsMin)
		if err != nil {
			return nil, err
		}
		signer = priv
	default:
		return nil, fmt.Errorf("key algorithm %q: want %s or %s", alg, AlgEdDSA, AlgRS256)
	}
	return newPrivateKey(signer, id)
}

func newPrivateKey(signer crypto.Signer, id string) (*PrivateKey, error) {
	k := &PrivateKey{id: id, signer: signer}
	switch signer.(type) {
	case ed25519.PrivateKey:
		k.alg = AlgEdDSA
	case *rsa.PrivateKey:
		k.alg = AlgRS256
	default:
		return nil, fmt.Errorf("private key %T: want Ed25519 or RSA", signer)
	}
	if id == "" {
		tp, err := Thumbprint(signer.Public())
		if err != nil {
			return nil, err
		}
		k.id = tp
	}
	if err := k.Public().check(); err != nil {
		return nil, err
	}
	return k, nil
}

// ParsePrivateKey reads a PEM "PRIVATE KEY" block (PKCS#8, as written by
// `openssl genpkey` and MarshalPEM) holding an Ed25519 or RSA key; an empty
// id is the key's thumbprint.
func ParsePrivateKey(pemBytes []byte, id string) (*PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("private key: no PEM block")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("private key: PEM block %q, want \"PRIVATE KEY\" (PKCS#8; convert with openssl pkcs8 -topk8 -nocrypt)", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key %T: want Ed25519 or RSA", key)
	}
	return newPrivateKey(signer, id)
}

// LoadPrivateKey reads a private key file (see ParsePrivateKey).
func LoadPrivateKey(file, id string) (*PrivateKey, error) {
	b, err := readFileMax(file, PrivateKeyBytesMax)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	k, err := ParsePrivateKey(b, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
}

// ID is the key id the key's tokens carry.
func (k *PrivateKey) ID() string { return k.id }

// Alg is AlgEdDSA or AlgRS256.
func (k *PrivateKey) Alg() string { return k.alg }

// Public is the key that verifies k's tokens, to put in a key set.
func (k *PrivateKey) Public() PublicKey {
	return PublicKey{ID: k.id, Alg: k.alg, Key: k.signer.Public()}
}

// MarshalPEM encodes the private key as a PEM "PRIVATE KEY" block (PKCS#8).
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Mint signs a token for c valid for ttl from now, its header naming k's id:
// what an identity provider issues.
func (k *PrivateKey) Mint(c Claims, ttl time.Duration, now time.Time) (string, error) {
	tc, err := newTokenClaims(c, ttl, now)
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(k.alg), tc)
	t.Header["kid"] = k.id
	return t.SignedString(k.signer)
}

// WriteKeyPair writes a new key's private half to privFile (mode 0600, never
// over an existing file) and adds its public half to the JWKS document
// jwksFile (made when missing; a key of the same id is replaced). This is
// how a test or a rehearsal plays the identity provider, and how it rotates:
// a second key pair goes into the same JWKS file beside the first.
func WriteKeyPair(k *PrivateKey, privFile, jwksFile string) error {
	set, err := NewKeySet()
	switch b, rerr := readFileMax(jwksFile, JWKSBytesMax); {
	case errors.Is(rerr, os.ErrNotExist):
	case rerr != nil:
		err = rerr
	default:
		set, err = parseJWKS(b)
	}
	if err != nil {
		return err
	}
	if set, err = set.With(k.Public()); err != nil {
		return err
	}
	doc, err := set.MarshalJWKS()
	if err != nil {
		return err
	}
	p, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(privFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	if _, err := f.Write(p); err != nil {
		f.Close()
		return fmt.Errorf("private key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	return writeFileAtomic(jwksFile, doc, 0o644)
}

// writeFileAtomic replaces file with b through a temporary file and a
// rename, so that a gateway reading it sees the old or the new document,
// never half of one.
func writeFileAtomic(file string, b []byte, mode os.FileMode) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
