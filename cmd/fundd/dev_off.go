//go:build nodev

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDevCmd in a production build (-tags nodev): the dev stack, with its
// private Postgres and in-process Kafka broker, is not linked, and `fundd
// dev` says so instead of being an unknown command.
func newDevCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "dev",
		Short:  "Not in this build (production builds leave the dev stack out)",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("fundd dev is not in this build: it was built with -tags nodev for production; use a development build (go run ./cmd/fundd dev)")
		},
	}
}
