package settlement

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fundplatform/fund/accounts"
)

// ErrBadChecksum is a custodian file whose checksum line does not match.
var ErrBadChecksum = errors.New("settlement: custodian file checksum mismatch")

// CustomerLine is one customer's row of the custodian settlement file, in
// minor units: shares confirmed from subscriptions, cash paid for standard
// redemptions, and the day's income in shares (negative on a losing day).
type CustomerLine struct {
	Customer      accounts.CustomerID
	Subscriptions int64
	Redemptions   int64
	Income        int64
}

// FileTotals is the totals line of the file.
type FileTotals struct {
	Customers     int64
	Subscriptions int64
	Redemptions   int64
	Income        int64
}

// The custodian file is CSV, one record type per first field:
//
//	H,<date>,<income form>,<income>,<fund income CNY>,<income per 10k>,<total eligible shares>
//	D,<customer id>,<subscriptions confirmed>,<redemptions paid>,<income>
//	T,<customers>,<subscriptions>,<redemptions>,<income>
//	C,SHA-256,<hex digest of every byte before this line>
//
// D lines come in ascending customer id; amounts have 2 decimals. The
// checksum line lets the custodian detect truncation or tampering.
const fileColumns = "record,customer_id,subscriptions_confirmed,redemptions_paid,income"

// CustodianWriter writes the custodian file line by line, keeping the
// running totals and digest.
type CustodianWriter struct {
	w      *bufio.Writer
	h      hash.Hash
	out    io.Writer
	totals FileTotals
	last   accounts.CustomerID
	buf    []byte
}

// NewCustodianWriter writes the column and header lines.
func NewCustodianWriter(w io.Writer, date time.Time, in Input, fundIncome, per10k, totalShares int64) *CustodianWriter {
	h := sha256.New()
	cw := &CustodianWriter{h: h, out: w}
	cw.w = bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
	form, value := "income", FormatFen(in.IncomeTotal)
	if in.PerTenK {
		form, value = "income_per_10k", accounts.FormatIncomePer10k(in.IncomePer10k)
	}
	fmt.Fprintln(cw.w, fileColumns)
	fmt.Fprintf(cw.w, "H,%s,%s,%s,%s,%s,%s\n", date.Format(time.DateOnly), form, value, FormatFen(fundIncome),
		accounts.FormatIncomePer10k(per10k), FormatFen(totalShares))
	return cw
}

// Line writes one customer's line; customers must come in ascending order.
func (cw *CustodianWriter) Line(l CustomerLine) error {
	if l.Customer <= cw.last {
		return fmt.Errorf("custodian file: customer %d after %d", l.Customer, cw.last)
	}
	cw.last = l.Customer
	cw.totals.Customers++
	cw.totals.Subscriptions += l.Subscriptions
	cw.totals.Redemptions += l.Redemptions
	cw.totals.Income += l.Income
	b := append(cw.buf[:0], "D,"...)
	b = strconv.AppendInt(b, int64(l.Customer), 10)
	for _, v := range []int64{l.Subscriptions, l.Redemptions, l.Income} {
		b = append(b, ',')
		b = appendFen(b, v)
	}
	b = append(b, '\n')
	cw.buf = b
	_, err := cw.w.Write(b)
	return err
}

// Close writes the totals and checksum lines and returns the digest.
func (cw *CustodianWriter) Close() (FileTotals, string, error) {
	t := cw.totals
	fmt.Fprintf(cw.w, "T,%d,%s,%s,%s\n", t.Customers, FormatFen(t.Subscriptions), FormatFen(t.Redemptions), FormatFen(t.Income))
	if err := cw.w.Flush(); err != nil {
		return t, "", err
	}
	sum := hex.EncodeToString(cw.h.Sum(nil))
	if _, err := fmt.Fprintf(cw.out, "C,SHA-256,%s\n", sum); err != nil {
		return t, "", err
	}
	return t, sum, nil
}

// appendFen appends v/100 with two decimals without going through decimal,
// which matters at ten million lines.
func appendFen(b []byte, v int64) []byte {
	u := uint64(v)
	if v < 0 {
		b = append(b, '-')
		u = -u
	}
	b = strconv.AppendUint(b, u/100, 10)
	b = append(b, '.')
	c := u % 100
	return append(b, byte('0'+c/10), byte('0'+c%10))
}

// VerifyCustodianFile checks a file's checksum line against its content and
// its totals line against its customer lines.
func VerifyCustodianFile(r io.Reader) (FileTotals, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	h := sha256.New()
	var sum FileTotals
	var got FileTotals
	sawTotals := false
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF && line == "" {
			return got, fmt.Errorf("no checksum line: %w", ErrBadChecksum)
		}
		if err != nil && err != io.EOF {
			return got, err
		}
		if strings.HasPrefix(line, "C,") {
			f := strings.Split(strings.TrimSpace(line), ",")
			if len(f) != 3 || f[1] != "SHA-256" || f[2] != hex.EncodeToString(h.Sum(nil)) {
				return got, ErrBadChecksum
			}
			if !sawTotals || got != sum {
				return got, fmt.Errorf("totals line %+v, customer lines add up to %+v: %w", got, sum, ErrBadChecksum)
			}
			return got, nil
		}
		h.Write([]byte(line))
		f := strings.Split(strings.TrimSpace(line), ",")
		switch f[0] {
		case "D":
			if len(f) != 5 {
				return got, fmt.Errorf("line %q: %w", line, ErrBadChecksum)
			}
			sum.Customers++
			for i, p := range []*int64{&sum.Subscriptions, &sum.Redemptions, &sum.Income} {
				v, err := parseScaled(f[2+i], 2, 1<<62)
				if err != nil {
					return got, fmt.Errorf("line %q: %w", line, err)
				}
				*p += v
			}
		case "T":
			if len(f) != 5 {
				return got, fmt.Errorf("line %q: %w", line, ErrBadChecksum)
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return got, fmt.Errorf("line %q: %w", line, err)
			}
			got.Customers = n
			for i, p := range []*int64{&got.Subscriptions, &got.Redemptions, &got.Income} {
				v, err := parseScaled(f[2+i], 2, 1<<62)
				if err != nil {
					return got, fmt.Errorf("line %q: %w", line, err)
				}
				*p = v
			}
			sawTotals = true
		}
	}
}
