package audit

import (
	"fmt"
	"strings"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
	"github.com/fundplatform/fund/ledger/xshard"
)

// The database-wide checks derive transfer ids inside Postgres, so that a
// million order rows are matched with the journal by a join instead of
// being carried to the audit and back. ledger.DeriveTransferID is SHA-256
// over namespace, then 0x00 and each part, cut to 16 bytes with the UUID
// version (5) and variant bits set; Postgres has sha256() since 11.
// TestDerivedIDSQL checks the two against each other.

// hashSQL is an SQL bytea expression: the SHA-256 that
// ledger.DeriveTransferID(namespace, parts...) starts from, for SQL text
// expressions.
func hashSQL(namespace string, parts ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sha256(convert_to(%s, 'UTF8')", namespace)
	for _, p := range parts {
		fmt.Fprintf(&b, " || '\\x00'::bytea || convert_to(%s, 'UTF8')", p)
	}
	b.WriteString(")")
	return b.String()
}

// idSQL is an SQL uuid expression: the transfer id of the SHA-256 h (an
// SQL bytea expression, used three times: compute it once, in a LATERAL).
func idSQL(h string) string {
	return fmt.Sprintf(`encode(set_byte(set_byte(substring(%[1]s FROM 1 FOR 16), 6, (get_byte(%[1]s, 6) & 15) | 80),
		8, (get_byte(%[1]s, 8) & 63) | 128), 'hex')::uuid`, h)
}

// legZeroHashSQL hashes to LegID(customer, request, 0) for SQL
// expressions of an order's customer id (bigint) and request id (text).
func legZeroHashSQL(customer, request string) string {
	return hashSQL("'accounts/order/' || "+customer+"::text", request, "'0'")
}

// SQL of what accounts/ids.go lays out: the account ranges and an id's
// home (ledger.HomeOf), for the set-based checks that cannot call Go.
const (
	customerAccountsEnd = ledger.AccountID(1) << 44 // customer accounts are below: customerID<<4 | slot
	quotaNamespace      = 1                         // id>>62 of a fast-redemption quota account
	homeSQL             = `((%s >> 4) & 1099511627775)`
)

// customerSideSQL tells whether the account id expression x is a
// customer's (cash, shares or a day's quota): the account an order's entry
// belongs to the customer by.
func customerSideSQL(x string) string {
	return fmt.Sprintf("(%[1]s < %[2]d OR %[1]s >> 62 = %[3]d)", x, int64(customerAccountsEnd), quotaNamespace)
}

// Transfer kinds of the checks: the accounts service's own (leg by leg of
// every single-shard order), and leg 1 of a saga.
var (
	orderKindFirst = accounts.TransferTopUp
	orderKindLast  = accounts.TransferWithdraw
	sagaOutKind    = xshard.KindOut
)
