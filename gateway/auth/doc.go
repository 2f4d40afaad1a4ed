// Package auth issues and checks the bearer tokens of the fund platform's
// API: JSON Web Tokens (golang-jwt/jwt/v5 does the cryptography) signed
// either with a shared key (HS256, for dev and tests) or by an identity
// provider with an asymmetric key (EdDSA or RS256) that the gateway knows
// by key id ("kid") from a JWKS document.
//
// A customer's token names the customer in "sub" (its decimal id) and acts
// on that customer only; an operator's token carries the "admin" scope.
// Tokens always expire ("exp" is required) and carry the issuer "fundplatform".
//
// Shared key:
//
//	tok, _ := auth.Mint(key, auth.Claims{Subject: "42"}, time.Hour, time.Now())
//	v, _ := auth.NewVerifier(key, nil)
//	p, err := v.Verify(tok) // p.Customer == 42
//
// Public keys: the verifier picks the key by the token's alg and kid, and
// uses a key only with its own algorithm. The keys come from a fixed
// KeySet (LoadJWKS) or a JWKSSource that follows a JWKS file or an identity
// provider's JWKS URL, refreshed every RefreshInterval and when a token
// names an unknown kid (rate limited); a failed read keeps the last good
// keys. To rotate, publish the new key beside the old one (both kids verify)
// and sign with the new one; to revoke a key, remove it from the document:
// its tokens are then refused, cached ones included.
//
//	k, _ := auth.GenerateKey(auth.AlgEdDSA, "2026-11")     // the provider's key
//	_ = auth.WriteKeyPair(k, "2026-11.pem", "jwks.json")    // private half, JWKS
//	src, _ := auth.NewJWKSFile(ctx, "jwks.json", auth.JWKSConfig{})
//	defer src.Close()
//	v, _ := auth.NewKeysVerifier(auth.Keys{HS256: devKey, Public: src}, nil)
//	tok, _ := k.Mint(auth.Claims{Subject: "42"}, time.Hour, time.Now())
//	p, err := v.Verify(tok) // p.Customer == 42
//
// `fundctl token --new-key EdDSA` writes such a key pair and JWKS file and
// `fundctl token --private-key-file` mints with it.
package auth
