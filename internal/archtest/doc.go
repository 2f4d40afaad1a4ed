// Package archtest holds the tests that keep the code's layout honest: the
// import rule of the layers (DESIGN.md, Layers), the size of functions, and
// one writer of each table (a table is written only by the package whose
// migrations create it: TestOneWriter). It has no code of its own;
// `go test ./internal/archtest/` runs the checks.
//
// The layers, from the bottom: internal plumbing (migrations runner,
// in-process broker, private Postgres, test helpers, supervisor) imports
// none of the domains; ledger imports only plumbing; accounts imports the
// ledger; settlement and gateway import accounts and the ledger (gateway
// may use settlement's domain types, never its adapters); loadtest, deploy,
// cmd and the dev stack (internal/devstack) sit on top.
package archtest
