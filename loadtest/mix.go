package loadtest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Op is one kind of request the generator sends.
type Op string

// Operations. All but OpHoldings place an order (a POST with an
// Idempotency-Key) that the audit checks.
const (
	OpSubscribe      Op = "subscribe"
	OpFastRedeem     Op = "fast_redeem"
	OpStandardRedeem Op = "standard_redeem"
	OpTransfer       Op = "transfer"
	OpPay            Op = "pay"
	OpHoldings       Op = "holdings"
)

// Ops lists every operation, in a fixed order.
var Ops = []Op{OpSubscribe, OpFastRedeem, OpStandardRedeem, OpTransfer, OpPay, OpHoldings}

// IsOrder reports whether the operation places an order.
func (o Op) IsOrder() bool { return o != OpHoldings }

// Mix is the weight of each operation; weights are relative.
type Mix map[Op]int

// DefaultMix is an evening in the app: mostly payments, transfers and
// looking at the balance, some subscriptions, a few redemptions.
func DefaultMix() Mix {
	return Mix{OpSubscribe: 20, OpFastRedeem: 8, OpStandardRedeem: 4, OpTransfer: 25, OpPay: 28, OpHoldings: 15}
}

// ParseMix reads "subscribe=20,pay=30,holdings=10"; operations left out
// have weight 0.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want op=weight", part)
		}
		op := Op(strings.TrimSpace(name))
		if !validOp(op) {
			return nil, fmt.Errorf("mix: unknown operation %q: want one of %v", name, Ops)
		}
		v, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || v < 0 || v > 1_000_000 {
			return nil, fmt.Errorf("mix: weight of %s %q: want 0..1000000", op, w)
		}
		m[op] = v
	}
	return m, m.Validate()
}

func validOp(op Op) bool {
	for _, o := range Ops {
		if o == op {
			return true
		}
	}
	return false
}

// Validate checks that some operation has weight.
func (m Mix) Validate() error {
	total := 0
	for op, w := range m {
		if !validOp(op) || w < 0 {
			return fmt.Errorf("mix: bad entry %s=%d", op, w)
		}
		total += w
	}
	if total == 0 {
		return fmt.Errorf("mix: all weights are zero")
	}
	return nil
}

// String formats the mix as ParseMix reads it.
func (m Mix) String() string {
	var parts []string
	for _, op := range Ops {
		if m[op] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", op, m[op]))
		}
	}
	return strings.Join(parts, ",")
}

// picker draws operations by weight from a uniform number in [0, total).
type picker struct {
	ops   []Op
	cum   []int
	total int
}

func newPicker(m Mix) picker {
	var p picker
	for _, op := range Ops {
		if w := m[op]; w > 0 {
			p.total += w
			p.ops = append(p.ops, op)
			p.cum = append(p.cum, p.total)
		}
	}
	return p
}

func (p picker) pick(u int) Op {
	return p.ops[sort.SearchInts(p.cum, u+1)]
}
