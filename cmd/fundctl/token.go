package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/gateway/auth"
)

// tokenOpts are the flags of `fundctl token`.
type tokenOpts struct {
	customer int64
	admin    bool
	keyFile  string
	ttl      time.Duration
	privFile string // sign with this private key (EdDSA/RS256) instead
	kid      string
	newKey   string // generate a key pair of this alg into privFile and jwksFile
	jwksFile string
}

// newTokenCmd is `fundctl token`: mint a bearer token for the API.
func newTokenCmd() *cobra.Command {
	var o tokenOpts
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a bearer token for the gateway (--customer N and/or --admin)",
		Long: `Prints a JWT (HS256) signed with the gateway's key (--key-file, or $FUND_JWT_KEY): a customer's
token (--customer N) acts on that customer only; --admin grants the admin scope.

  curl -H "Authorization: Bearer $(fundctl token --admin --key-file k)" localhost:8080/v1/admin/recon/report

With --private-key-file the token is signed as an identity provider signs it: EdDSA or RS256 (from the
key, a PEM PKCS#8 file such as 'openssl genpkey -algorithm ed25519' writes), its header naming the key id
--kid (default: the key's RFC 7638 thumbprint), for a gateway that has the public key in its JWKS.

--new-key EdDSA|RS256 first makes such a key pair: the private half into --private-key-file (a new file),
the public half added to the JWKS document --jwks-file (made if missing; give the same file again for a
rotation, and the old and the new key both verify). It prints the key id on stderr, and a token too if
--customer or --admin is given.

  fundctl token --new-key EdDSA --kid 2026-11 --private-key-file idp.pem --jwks-file jwks.json
  fundctl token --customer 42 --private-key-file idp.pem --kid 2026-11`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.Int64Var(&o.customer, "customer", 0, "the customer the token acts for")
	f.BoolVar(&o.admin, "admin", false, "grant the admin scope")
	f.StringVar(&o.keyFile, "key-file", "", "file holding the shared HS256 signing key (default $"+auth.EnvKey+")")
	f.DurationVar(&o.ttl, "ttl", time.Hour, "how long the token is valid")
	f.StringVar(&o.privFile, "private-key-file", "", "sign with this private key (PEM PKCS#8, Ed25519 or RSA) instead of the shared key")
	f.StringVar(&o.kid, "kid", "", "key id of --private-key-file (default: the key's thumbprint)")
	f.StringVar(&o.newKey, "new-key", "", "make a new key pair ("+auth.AlgEdDSA+" or "+auth.AlgRS256+") into --private-key-file and --jwks-file")
	f.StringVar(&o.jwksFile, "jwks-file", "", "with --new-key: the JWKS document to add the public key to")
	return cmd
}

func (o *tokenOpts) run(cmd *cobra.Command) error {
	mint := o.customer > 0 || o.admin
	if o.customer < 0 || (!mint && o.newKey == "") {
		return errors.New("give --customer N (a positive id) or --admin")
	}
	if o.privFile == "" && (o.kid != "" || o.newKey != "" || o.jwksFile != "") {
		return errors.New("--kid, --new-key and --jwks-file go with --private-key-file")
	}
	if o.newKey != "" {
		if o.jwksFile == "" {
			return errors.New("--new-key needs --jwks-file for the public key")
		}
		alg := map[string]string{"eddsa": auth.AlgEdDSA, "ed25519": auth.AlgEdDSA, "rs256": auth.AlgRS256}[strings.ToLower(o.newKey)]
		if alg == "" {
			return fmt.Errorf("--new-key %q: want %s or %s", o.newKey, auth.AlgEdDSA, auth.AlgRS256)
		}
		k, err := auth.GenerateKey(alg, o.kid)
		if err != nil {
			return err
		}
		if err := auth.WriteKeyPair(k, o.privFile, o.jwksFile); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "new %s key %s: private key in %s, public key added to %s\n", k.Alg(), k.ID(), o.privFile, o.jwksFile)
		if !mint {
			return nil
		}
	} else if o.jwksFile != "" {
		return errors.New("--jwks-file goes with --new-key")
	}
	tok, err := o.mint()
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), tok)
	return nil
}

// mint signs the token with the private key, or else the shared key.
func (o *tokenOpts) mint() (string, error) {
	var cl auth.Claims
	if o.customer > 0 {
		cl.Subject = strconv.FormatInt(o.customer, 10)
	}
	if o.admin {
		cl.Scopes = []string{auth.ScopeAdmin}
	}
	if o.privFile != "" {
		k, err := auth.LoadPrivateKey(o.privFile, o.kid)
		if err != nil {
			return "", err
		}
		return k.Mint(cl, o.ttl, time.Now())
	}
	key, err := auth.LoadKey(o.keyFile)
	if err != nil {
		return "", err
	}
	return auth.Mint(key, cl, o.ttl, time.Now())
}
