package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/fundplatform/fund/gateway/auth"
)

// newTokenCmd is `fundctl token`: mint a bearer token for the API.
func newTokenCmd() *cobra.Command {
	var (
		customer int64
		admin    bool
		keyFile  string
		ttl      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a bearer token for the gateway (--customer N and/or --admin)",
		Long: `Prints a JWT (HS256) signed with the gateway's key (--key-file, or $FUND_JWT_KEY): a customer's
token (--customer N) acts on that customer only; --admin grants the admin scope.

  curl -H "Authorization: Bearer $(fundctl token --admin --key-file k)" localhost:8080/v1/admin/recon/report`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if customer < 0 || (customer == 0 && !admin) {
				return fmt.Errorf("give --customer N (a positive id) or --admin")
			}
			key, err := auth.LoadKey(keyFile)
			if err != nil {
				return err
			}
			var cl auth.Claims
			if customer > 0 {
				cl.Subject = strconv.FormatInt(customer, 10)
			}
			if admin {
				cl.Scopes = []string{auth.ScopeAdmin}
			}
			tok, err := auth.Mint(key, cl, ttl, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&customer, "customer", 0, "the customer the token acts for")
	f.BoolVar(&admin, "admin", false, "grant the admin scope")
	f.StringVar(&keyFile, "key-file", "", "file holding the signing key (default $"+auth.EnvKey+")")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	return cmd
}
