package loadtest

import (
	"math"
	"time"
)

// Marker is a stretch of a run to draw on its time charts (a fault injected
// during it, say): a name and where it starts and ends, in seconds from the
// run's start (Result.StartedAt). A marker of no length is drawn as a line.
type Marker struct {
	Name   string  `json:"name"`
	Detail string  `json:"detail,omitempty"` // what exactly happened, for a person
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
}

// Window is how the orders fared in a stretch of a run, a fault's window:
// every order due in it, or sent before it and still out when it began.
// Errors are the orders that got no acknowledgement: answered with an
// error (5xx, or any answer other than 2xx, 422 and 429) or with none
// after the client's retries (Failed), and those the generator dropped
// unsent because too many were out (Dropped): a platform that hangs makes
// the generator drop, and that is not to be hidden.
type Window struct {
	Name   string  `json:"name"`
	Detail string  `json:"detail,omitempty"`
	StartS float64 `json:"start_s"` // seconds from the run's start
	EndS   float64 `json:"end_s"`   // the window's end: the fault's end plus a tail
	// FaultEndS is where the fault itself ended (its marker's end).
	FaultEndS    float64          `json:"fault_end_s"`
	Sent         int64            `json:"sent"`         // orders sent, dropped ones included
	Acknowledged int64            `json:"acknowledged"` // accepted or refused by a business rule
	Shed         int64            `json:"shed"`         // 429: the gateway asked the app to come back
	Errors       int64            `json:"errors"`       // failed or dropped
	ErrorPct     float64          `json:"error_pct"`    // of Sent
	ErrorsByCode map[string]int64 `json:"errors_by_code,omitempty"`
	// ErrorsByReason counts the errors by code and the answer's reason
	// ("503 SHARD_FAILING_OVER", "503 no gateway available"; the code
	// alone when the answer gave none), so that a window says which
	// component failed the orders and why.
	ErrorsByReason map[string]int64 `json:"errors_by_reason,omitempty"`
	// RecoveryS is the time from the window's start until the per-second
	// success rate was back at SuccessMin or more and stayed there (see
	// Recovery); Recovered is false when it never was within the window.
	RecoveryS float64 `json:"recovery_s"`
	Recovered bool    `json:"recovered"`
	// Pass and Why are the verdict of whoever judged the window against
	// its bounds (Judge); Why says what was exceeded.
	Judged bool   `json:"judged"`
	Pass   bool   `json:"pass"`
	Why    string `json:"why,omitempty"`
}

// Bounds of a window's success rate, as the rehearsal measures recovery.
const (
	// SuccessMin is the per-second share of orders acknowledged at which a
	// second counts as healthy.
	SuccessMin = 0.99
	// RecoveryHold is how long the rate must stay healthy for a recovery
	// to count.
	RecoveryHold = 3 * time.Second
)

// WindowOf counts the orders of records (a run that started at runStart)
// in marker m's window: from its start until its end plus tail.
func WindowOf(records []Record, runStart time.Time, m Marker, tail time.Duration) Window {
	from := runStart.Add(seconds(m.StartS))
	until := runStart.Add(seconds(m.EndS)).Add(tail)
	w := Window{Name: m.Name, Detail: m.Detail, StartS: m.StartS, FaultEndS: m.EndS,
		EndS: until.Sub(runStart).Seconds()}
	for _, r := range records {
		if r.Due.After(until) || r.Due.Before(from) && r.Ended.Before(from) {
			continue
		}
		w.Sent++
		switch r.Outcome {
		case Accepted, Rejected:
			w.Acknowledged++
		case Shed:
			w.Shed++
		default:
			w.Errors++
			if w.ErrorsByCode == nil {
				w.ErrorsByCode, w.ErrorsByReason = map[string]int64{}, map[string]int64{}
			}
			code := r.Code
			if code == "" {
				code = string(r.Outcome)
			}
			w.ErrorsByCode[code]++
			if r.Reason != "" {
				code += " " + r.Reason
			}
			w.ErrorsByReason[code]++
		}
	}
	if w.Sent > 0 {
		w.ErrorPct = 100 * float64(w.Errors) / float64(w.Sent)
	}
	rec, ok := Recovery(records, from, until)
	w.RecoveryS, w.Recovered = rec.Seconds(), ok
	return w
}

// Recovery is how long after from the per-second success rate of the
// orders due in [from, until) was back at SuccessMin or more for good: the
// end of the last second below it (0 when there was none), counted in
// whole seconds from from. Acknowledged orders (accepted, or refused by a
// business rule) are successes; shed, failed and dropped ones are not; a
// second without orders is healthy. ok is false when the healthy stretch
// after it is shorter than RecoveryHold before until or the run's last
// order, so that a fault at the very end of a run is not taken for healed.
func Recovery(records []Record, from, until time.Time) (_ time.Duration, ok bool) {
	if !until.After(from) {
		return 0, false
	}
	n := int(math.Ceil(until.Sub(from).Seconds()))
	sent, good := make([]int, n), make([]int, n)
	var last time.Time
	for _, r := range records {
		if r.Due.After(last) {
			last = r.Due
		}
		if r.Due.Before(from) || !r.Due.Before(until) {
			continue
		}
		i := int(r.Due.Sub(from) / time.Second)
		sent[i]++
		if r.Outcome == Accepted || r.Outcome == Rejected {
			good[i]++
		}
	}
	lastBad := -1
	for i := range n {
		if sent[i] > 0 && float64(good[i]) < SuccessMin*float64(sent[i]) {
			lastBad = i
		}
	}
	rec := time.Duration(lastBad+1) * time.Second
	healthyUntil := until
	if end := last.Add(time.Second); end.Before(healthyUntil) {
		healthyUntil = end
	}
	return rec, !from.Add(rec).Add(RecoveryHold).After(healthyUntil)
}

// Judge sets w's verdict: it passes when its errors are at most
// errorPctMax percent of the orders sent in it and it recovered in less
// than recoveryMax.
func (w *Window) Judge(errorPctMax float64, recoveryMax time.Duration) {
	w.Judged, w.Pass, w.Why = true, true, ""
	switch {
	case w.ErrorPct > errorPctMax:
		w.Pass, w.Why = false, "errors above the bound"
	case !w.Recovered:
		w.Pass, w.Why = false, "the success rate did not stay at 99% within the window"
	case seconds(w.RecoveryS) >= recoveryMax:
		w.Pass, w.Why = false, "recovery not under the bound"
	}
	if w.Why != "" && w.ErrorPct > errorPctMax && (!w.Recovered || seconds(w.RecoveryS) >= recoveryMax) {
		w.Why = "errors above the bound and recovery not under it"
	}
}

// seconds turns float seconds into a Duration (to the microsecond).
func seconds(s float64) time.Duration {
	return time.Duration(math.Round(s*1e6)) * time.Microsecond
}
