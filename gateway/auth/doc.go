// Package auth issues and checks the bearer tokens of the fund platform's
// API: HS256 JSON Web Tokens signed with a key the gateway is configured
// with (golang-jwt/jwt/v5 does the cryptography).
//
// A customer's token names the customer in "sub" (its decimal id) and acts
// on that customer only; an operator's token carries the "admin" scope.
// Tokens always expire ("exp" is required) and carry the issuer "fundplatform".
//
//	tok, _ := auth.Mint(key, auth.Claims{Subject: "42"}, time.Hour, time.Now())
//	p, err := auth.NewVerifier(key).Verify(tok) // p.Customer == 42
package auth
