package settlement

import (
	"errors"
	"fmt"
	"time"

	"github.com/fundplatform/fund/accounts"
	"github.com/fundplatform/fund/ledger"
)

// Refusal is an error of a settlement run written for the operator who
// asked for it (the admin API shows it as the message): what stopped the
// run and, where something resolves it, what. It matches its Kind, one of
// the package's sentinels, with errors.Is, so callers classify it as
// before; only the text is the refusal's own, without the sentinel's.
type Refusal struct {
	Kind error
	Text string
}

func (e *Refusal) Error() string { return e.Text }

// Unwrap returns the Kind.
func (e *Refusal) Unwrap() error { return e.Kind }

// Refusef returns a *Refusal of kind with a formatted text.
func Refusef(kind error, format string, args ...any) error {
	return &Refusal{Kind: kind, Text: fmt.Sprintf(format, args...)}
}

// Statuses of a date's run, as RunState.Status gives them (and the admin
// API shows them).
const (
	StatusRunning   = "RUNNING"   // opened and not finished: running, or stopped without a record (a crash)
	StatusFailed    = "FAILED"    // the last attempt stopped with an error; RunState.Failure says which
	StatusCompleted = "COMPLETED" // settled
)

// RunFailure is why the last attempt at an unfinished run stopped. A run
// that failed keeps every step it finished; the next attempt resumes after
// them.
type RunFailure struct {
	// At is when it was recorded.
	At time.Time
	// Error is the error, as the one who ran it was told.
	Error string
	// InputRefused: the income was refused (no eligible shares for it, or
	// out of range over the shares there are), before any of it was
	// booked; the date may be settled with another income.
	InputRefused bool
	// Resolve says what settles the date, with the command.
	Resolve string
}

// Status is the run's status: StatusCompleted, StatusFailed or
// StatusRunning.
func (st RunState) Status() string {
	switch {
	case st.Completed:
		return StatusCompleted
	case st.Failure != nil:
		return StatusFailed
	}
	return StatusRunning
}

// Note says, for an unfinished run, why it has not finished and what
// finishes it; "" for a completed one.
func (st RunState) Note() string {
	date := st.Input.Date.Format(time.DateOnly)
	switch st.Status() {
	case StatusFailed:
		return fmt.Sprintf("the run of %s failed at %s: %s. To resolve: %s", date, cstMinute(st.Failure.At),
			st.Failure.Error, st.Failure.Resolve)
	case StatusRunning:
		return fmt.Sprintf("the run of %s started at %s has not finished: it is running, or its process stopped "+
			"mid-run. To resolve (once no run of it is in progress): %s", date, cstMinute(st.StartedAt), resumeHint(st.Input))
	}
	return ""
}

// SettleCommand is the command (and the admin API call) that settles
// in.Date with in's income.
func SettleCommand(in Input) string {
	date := in.Date.Format(time.DateOnly)
	flag, field, value := "--income", "income", FormatFen(in.IncomeTotal)
	if in.PerTenK {
		flag, field, value = "--income-per-10k", "income_per_10k", accounts.FormatIncomePer10k(in.IncomePer10k)
	}
	return fmt.Sprintf(`fundctl settle run --date %s %s %s (or POST /v1/admin/settlements {"date": "%s", "%s": "%s"})`,
		date, flag, value, date, field, value)
}

// resumeHint is what resumes a run with its own income.
func resumeHint(in Input) string {
	return fmt.Sprintf("settle %s again with the same income: %s; the run resumes where it stopped",
		in.Date.Format(time.DateOnly), SettleCommand(in))
}

// inputRefused reports whether err refuses the run's income rather than
// stopping the run for another cause.
func inputRefused(err error) bool {
	return errors.Is(err, ErrNoShares) || errors.Is(err, ErrInvalidIncome) || errors.Is(err, ErrIncomeOverflow)
}

// failureOf is the record of a run of in stopped by err.
func failureOf(in Input, err error) RunFailure {
	f := RunFailure{Error: err.Error(), InputRefused: inputRefused(err), Resolve: resumeHint(in)}
	date := in.Date.Format(time.DateOnly)
	switch {
	case errors.Is(err, ErrNoShares):
		f.Resolve = fmt.Sprintf("settle %s with income 0: %s; the run resumes where it stopped",
			date, SettleCommand(Input{Date: in.Date}))
	case f.InputRefused:
		f.Resolve = fmt.Sprintf("settle %s again with a corrected income (fundctl settle run --date %s --income CNY "+
			"or --income-per-10k X, or POST /v1/admin/settlements); the run resumes where it stopped", date, date)
	}
	return f
}

// cstMinute prints a time in China Standard Time to the minute.
func cstMinute(t time.Time) string {
	if t.IsZero() {
		return "an unknown time"
	}
	return t.In(ledger.BusinessZone()).Format("2006-01-02 15:04 MST")
}

// IncomeText names the input's income without its date: "income 5.00",
// "income per 10,000 shares 0.6543".
func (in Input) IncomeText() string {
	if in.PerTenK {
		return "income per 10,000 shares " + accounts.FormatIncomePer10k(in.IncomePer10k)
	}
	return "income " + FormatFen(in.IncomeTotal)
}
