package auth

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the "iss" of every token the platform mints and accepts.
const Issuer = "fundplatform"

// ScopeAdmin lets a token use the admin service and act on any customer.
const ScopeAdmin = "admin"

// KeyLenMin is the shortest signing key accepted: HS256 wants at least
// 256 bits.
const KeyLenMin = 32

// Errors of Verify. All of them mean 401 Unauthenticated.
var (
	ErrNoToken      = errors.New("no bearer token")
	ErrInvalidToken = errors.New("invalid token")
	ErrExpired      = errors.New("token expired")
	ErrKeyTooShort  = fmt.Errorf("signing key shorter than %d bytes", KeyLenMin)
)

// Claims are what a token says about its holder.
type Claims struct {
	// Subject is the customer's decimal id; empty for a pure operator token.
	Subject string
	// Scopes granted, such as ScopeAdmin.
	Scopes []string
}

// Principal is a verified token's holder.
type Principal struct {
	// Customer is the customer the token acts for; 0 when it names none.
	Customer int64
	Scopes   []string
	Expires  time.Time
}

// Admin reports whether the principal holds the admin scope.
func (p Principal) Admin() bool { return slices.Contains(p.Scopes, ScopeAdmin) }

// MayActOn reports whether the principal may act on customer c: its own
// customer, or any customer with the admin scope.
func (p Principal) MayActOn(c int64) bool { return p.Admin() || (p.Customer != 0 && p.Customer == c) }

type tokenClaims struct {
	Scope string `json:"scope,omitempty"`
	jwt.RegisteredClaims
}

// Mint signs an HS256 token with the shared key for c valid for ttl from
// now. PrivateKey.Mint signs with an asymmetric key instead.
func Mint(key []byte, c Claims, ttl time.Duration, now time.Time) (string, error) {
	if len(key) < KeyLenMin {
		return "", ErrKeyTooShort
	}
	tc, err := newTokenClaims(c, ttl, now)
	if err != nil {
		return "", err
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(key)
}

// newTokenClaims checks c and ttl and returns the claims of a token.
func newTokenClaims(c Claims, ttl time.Duration, now time.Time) (tokenClaims, error) {
	if ttl <= 0 {
		return tokenClaims{}, fmt.Errorf("token lifetime %s: want > 0", ttl)
	}
	if c.Subject != "" {
		if id, err := strconv.ParseInt(c.Subject, 10, 64); err != nil || id <= 0 {
			return tokenClaims{}, fmt.Errorf("subject %q: want a positive customer id", c.Subject)
		}
	}
	return tokenClaims{
		Scope: strings.Join(c.Scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   c.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}, nil
}

// Keys are what a Verifier accepts: a shared HS256 key, public keys by key
// id, or both (a dev stack beside an identity provider).
type Keys struct {
	// HS256 is the shared key (>= KeyLenMin bytes) of the tokens Mint
	// signs; nil = HS256 tokens are refused. Required when Public is nil.
	HS256 []byte
	// Public holds the keys of EdDSA and RS256 tokens, found by the token's
	// "kid": a *KeySet (fixed, e.g. from LoadJWKS) or a *JWKSSource (a JWKS
	// file or URL, refreshed); nil = only HS256 tokens are accepted.
	Public KeySource
}

// Verifier checks tokens against its keys. It is safe for concurrent use.
//
// The key of a token is chosen by its alg and kid together, never by the
// alg alone, and a key is used only with its own algorithm: an EdDSA or
// RS256 token must name a kid of the set whose key is of that algorithm; an
// HS256 token is checked with the shared key only, and, when public keys are
// configured, must carry no kid (so a public key can never be taken for an
// HMAC secret). "none" and every other alg are refused.
type Verifier struct {
	hs256  []byte
	public KeySource
	parser *jwt.Parser
}

// NewVerifier returns a Verifier of HS256 tokens signed with key; now is
// the clock (nil = time.Now).
func NewVerifier(key []byte, now func() time.Time) (*Verifier, error) {
	if len(key) < KeyLenMin {
		return nil, ErrKeyTooShort
	}
	return NewKeysVerifier(Keys{HS256: key}, now)
}

// NewKeysVerifier returns a Verifier of tokens signed with keys; now is the
// clock (nil = time.Now). Without public keys the shared key is required
// (ErrKeyTooShort, as NewVerifier); a shared key given is >= KeyLenMin.
func NewKeysVerifier(keys Keys, now func() time.Time) (*Verifier, error) {
	var algs []string
	if keys.HS256 != nil || keys.Public == nil {
		if len(keys.HS256) < KeyLenMin {
			return nil, ErrKeyTooShort
		}
		algs = append(algs, AlgHS256)
	}
	if keys.Public != nil {
		algs = append(algs, AlgEdDSA, AlgRS256)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5 * time.Second),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &Verifier{hs256: keys.HS256, public: keys.Public, parser: jwt.NewParser(opts...)}, nil
}

// Verify checks a token (with or without its "Bearer " prefix) and returns
// its holder. Errors: ErrNoToken, ErrExpired, ErrInvalidToken (which wraps
// ErrUnknownKey for a kid not in the set).
func (v *Verifier) Verify(token string) (Principal, error) {
	p, _, err := v.verify(token)
	return p, err
}

// verify is Verify that also returns the public key that verified the
// token (zero for HS256), so that a cache can tell when it is revoked.
func (v *Verifier) verify(token string) (Principal, PublicKey, error) {
	token = strings.TrimSpace(token)
	if t, ok := cutPrefixFold(token, "Bearer "); ok {
		token = strings.TrimSpace(t)
	} else if strings.EqualFold(token, "Bearer") {
		token = ""
	}
	if token == "" {
		return Principal{}, PublicKey{}, ErrNoToken
	}
	var (
		tc  tokenClaims
		key PublicKey
	)
	_, err := v.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		k, err := v.keyOf(t)
		if err != nil {
			return nil, err
		}
		if k.ID == "" {
			return v.hs256, nil
		}
		key = k
		return k.Key, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Principal{}, PublicKey{}, ErrExpired
	case err != nil:
		return Principal{}, PublicKey{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	p, err := tc.principal()
	return p, key, err
}

// keyOf picks the key of t by its alg and kid: the zero PublicKey stands for
// the shared HS256 key.
func (v *Verifier) keyOf(t *jwt.Token) (PublicKey, error) {
	kid, hasKid := t.Header["kid"]
	id, _ := kid.(string)
	switch alg := t.Method.Alg(); alg {
	case AlgHS256:
		if v.hs256 == nil {
			return PublicKey{}, errors.New("HS256 tokens are not accepted")
		}
		if hasKid && v.public != nil {
			return PublicKey{}, errors.New("an HS256 token names a key id")
		}
		return PublicKey{}, nil
	case AlgEdDSA, AlgRS256:
		if v.public == nil {
			return PublicKey{}, fmt.Errorf("%s tokens are not accepted", alg)
		}
		if id == "" {
			return PublicKey{}, fmt.Errorf("an %s token names no key id", alg)
		}
		k, err := v.public.PublicKey(id)
		if err != nil {
			return PublicKey{}, err
		}
		if k.Alg != alg {
			return PublicKey{}, fmt.Errorf("key %q is for %s, the token says %s", id, k.Alg, alg)
		}
		return k, nil
	default: // the parser's WithValidMethods lets no other alg through
		return PublicKey{}, fmt.Errorf("alg %q refused", alg)
	}
}

// principal checks and reads the claims of a verified token.
func (tc *tokenClaims) principal() (Principal, error) {
	p := Principal{Expires: tc.ExpiresAt.Time}
	if tc.Scope != "" {
		p.Scopes = strings.Fields(tc.Scope)
	}
	if tc.Subject != "" {
		id, err := strconv.ParseInt(tc.Subject, 10, 64)
		if err != nil || id <= 0 {
			return Principal{}, fmt.Errorf("%w: subject %q is not a customer id", ErrInvalidToken, tc.Subject)
		}
		p.Customer = id
	}
	if p.Customer == 0 && !p.Admin() {
		return Principal{}, fmt.Errorf("%w: names no customer and holds no admin scope", ErrInvalidToken)
	}
	return p, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
