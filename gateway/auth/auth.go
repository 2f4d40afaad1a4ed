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

// Mint signs a token for c valid for ttl from now.
func Mint(key []byte, c Claims, ttl time.Duration, now time.Time) (string, error) {
	if len(key) < KeyLenMin {
		return "", ErrKeyTooShort
	}
	if ttl <= 0 {
		return "", fmt.Errorf("token lifetime %s: want > 0", ttl)
	}
	if c.Subject != "" {
		if id, err := strconv.ParseInt(c.Subject, 10, 64); err != nil || id <= 0 {
			return "", fmt.Errorf("subject %q: want a positive customer id", c.Subject)
		}
	}
	tc := tokenClaims{
		Scope: strings.Join(c.Scopes, " "),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   c.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(key)
}

// Verifier checks tokens against one key. It is safe for concurrent use.
type Verifier struct {
	key    []byte
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for key; now is the clock (nil = time.Now).
func NewVerifier(key []byte, now func() time.Time) (*Verifier, error) {
	if len(key) < KeyLenMin {
		return nil, ErrKeyTooShort
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5 * time.Second),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &Verifier{key: key, parser: jwt.NewParser(opts...)}, nil
}

// Verify checks a token (with or without its "Bearer " prefix) and returns
// its holder. Errors: ErrNoToken, ErrExpired, ErrInvalidToken.
func (v *Verifier) Verify(token string) (Principal, error) {
	token = strings.TrimSpace(token)
	if t, ok := cutPrefixFold(token, "Bearer "); ok {
		token = strings.TrimSpace(t)
	} else if strings.EqualFold(token, "Bearer") {
		token = ""
	}
	if token == "" {
		return Principal{}, ErrNoToken
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return v.key, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Principal{}, ErrExpired
	case err != nil:
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
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
