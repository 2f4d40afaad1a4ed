// Package clienttest proves the gateway's OpenAPI 3 document right the way
// a mobile team would use it: a client generated from the served document
// by standard tools from npm runs the whole money cycle against the dev
// stack on a test clock. It holds no Go API, only the test and the Node
// project beside it:
//
//   - package.json and package-lock.json pin openapi-typescript (types from
//     the document), openapi-fetch (the typed client) and TypeScript;
//   - src/cycle.ts is the cycle, one function per step (open a customer,
//     top up and retry, subscribe, a refused overdraft, holdings; advance
//     the test clock a week and settle each day: income and the 7-day
//     yield; fast redeem; register and pay a merchant; standard redeem,
//     advance past its payout and settle; withdraw, balances to the cent);
//   - the test starts the dev stack (what `fundd dev --test-clock` runs), copies the
//     project to a temporary directory, runs `npm ci` from the lock file
//     (offline when npm's cache has the packages), generates the types from
//     /openapi3.json, compiles and runs the cycle. Without node and npm it
//     skips, saying so; under CI it fails.
//
// By hand, against a fresh `fundd dev --test-clock`:
//
//	cd gateway/api/clienttest && npm ci
//	FUND_API_URL=http://127.0.0.1:PORT FUND_TOKEN=ADMIN_TOKEN npm test
package clienttest
