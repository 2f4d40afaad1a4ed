package loadtest

import (
	"testing"
	"time"
)

// synthetic makes a run of `secs` seconds at `rate` orders a second from
// start, each answered 50 ms after it was due; outcome(second, i) says how
// the i-th order of a second ended.
func synthetic(start time.Time, secs, rate int, outcome func(sec, i int) (Outcome, string)) []Record {
	var out []Record
	for s := range secs {
		for i := range rate {
			due := start.Add(time.Duration(s)*time.Second + time.Duration(i)*time.Second/time.Duration(rate))
			o, code := outcome(s, i)
			out = append(out, Record{Op: OpSubscribe, Outcome: o, Code: code, Due: due, Ended: due.Add(50 * time.Millisecond)})
		}
	}
	return out
}

func TestRecoveryAndWindow(t *testing.T) {
	start := time.Date(2026, 11, 10, 23, 59, 0, 0, time.UTC)
	// 60 s at 100/s; a fault at 20 s: seconds 20..24 lose 10 orders each
	// (503), second 26 loses 2 (98%: still below 99%), second 28 loses
	// one (99%: healthy), second 27 sheds 5 (429 is not a success either).
	recs := synthetic(start, 60, 100, func(s, i int) (Outcome, string) {
		switch {
		case s >= 20 && s <= 24 && i < 10, s == 26 && i < 2, s == 28 && i < 1:
			return Failed, "503"
		case s == 27 && i < 5:
			return Shed, "429"
		}
		return Accepted, "200"
	})
	w := WindowOf(recs, start, Marker{Name: "kill-owner", StartS: 20, EndS: 22}, 10*time.Second)
	if w.StartS != 20 || w.FaultEndS != 22 || w.EndS != 32 {
		t.Fatalf("window %v..%v (fault end %v), want 20..32 (22)", w.StartS, w.EndS, w.FaultEndS)
	}
	// 12 s of orders, the one due at 32.000 exactly (the end is
	// inclusive) and the 5 due in 19.95..19.99 s still out at 20 s: 1206;
	// errors 50 + 2 + 1.
	if w.Sent != 1206 || w.Errors != 53 || w.Shed != 5 || w.Acknowledged != 1206-53-5 || w.ErrorsByCode["503"] != 53 {
		t.Fatalf("window counts %+v", w)
	}
	if want := 100 * 53.0 / 1206; w.ErrorPct != want {
		t.Fatalf("error share %v, want %v", w.ErrorPct, want)
	}
	// Seconds 20..24, 26 and 27 (shed) are below 99%; 28 is at 99%: the
	// rate is back for good from 28 s, 8 s after the fault began.
	if !w.Recovered || w.RecoveryS != 8 {
		t.Fatalf("recovery %v s (recovered %v), want 8 s", w.RecoveryS, w.Recovered)
	}
	w.Judge(0.1, 10*time.Second)
	if !w.Judged || w.Pass || w.Why != "errors above the bound" {
		t.Fatalf("verdict %v %v %q", w.Judged, w.Pass, w.Why)
	}

	// A clean window recovers at once and passes.
	clean := WindowOf(recs, start, Marker{Name: "broker-down", StartS: 40, EndS: 45}, 10*time.Second)
	if clean.Errors != 0 || !clean.Recovered || clean.RecoveryS != 0 {
		t.Fatalf("clean window %+v", clean)
	}
	clean.Judge(0.1, 10*time.Second)
	if !clean.Pass || clean.Why != "" {
		t.Fatalf("clean window judged %v %q", clean.Pass, clean.Why)
	}
}

// An order sent before the window and still out when it began counts in
// it; one answered before it does not.
func TestWindowCountsOrdersStillOut(t *testing.T) {
	start := time.Date(2026, 11, 10, 23, 59, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(seconds(s)) }
	recs := []Record{
		{Outcome: Failed, Code: "timeout", Due: at(9), Ended: at(25)},  // out across the fault's start
		{Outcome: Accepted, Code: "200", Due: at(9.5), Ended: at(9.6)}, // done before it
		{Outcome: Dropped, Due: at(12), Ended: at(12)},                 // dropped by the generator
		{Outcome: Accepted, Code: "200", Due: at(30), Ended: at(30.1)}, // after the tail
	}
	w := WindowOf(recs, start, Marker{Name: "stop-owner", StartS: 10, EndS: 15}, 10*time.Second)
	if w.Sent != 2 || w.Errors != 2 || w.ErrorsByCode["timeout"] != 1 || w.ErrorsByCode["dropped"] != 1 {
		t.Fatalf("window %+v", w)
	}
}

// A window counts its errors by code and reason too: which component
// answered them, and why.
func TestWindowCountsErrorsByReason(t *testing.T) {
	start := time.Date(2026, 11, 10, 23, 59, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(seconds(s)) }
	recs := []Record{
		{Outcome: Failed, Code: "503", Reason: "SHARD_FAILING_OVER", Due: at(11), Ended: at(16)},
		{Outcome: Failed, Code: "503", Reason: "SHARD_FAILING_OVER", Due: at(12), Ended: at(17)},
		{Outcome: Failed, Code: "503", Reason: "no gateway available", Due: at(13), Ended: at(13)},
		{Outcome: Failed, Code: "timeout", Due: at(14), Ended: at(24)},
		{Outcome: Accepted, Code: "200", Due: at(15), Ended: at(15.1)},
	}
	w := WindowOf(recs, start, Marker{Name: "kill-owner", StartS: 10, EndS: 15}, 10*time.Second)
	want := map[string]int64{"503 SHARD_FAILING_OVER": 2, "503 no gateway available": 1, "timeout": 1}
	if w.Errors != 4 || len(w.ErrorsByReason) != len(want) {
		t.Fatalf("window %+v", w)
	}
	for k, n := range want {
		if w.ErrorsByReason[k] != n {
			t.Fatalf("errors by reason %v, want %v", w.ErrorsByReason, want)
		}
	}
}

// A fault whose errors go on until the run ends has not recovered, and
// neither has one whose healthy stretch is shorter than RecoveryHold.
func TestRecoveryNeedsAHealthyHold(t *testing.T) {
	start := time.Date(2026, 11, 10, 23, 59, 0, 0, time.UTC)
	recs := synthetic(start, 30, 50, func(s, i int) (Outcome, string) {
		if s >= 20 && s <= 27 && i == 0 {
			return Failed, "503"
		}
		return Accepted, "200"
	})
	// Bad until 28 s; the run's orders end at 30 s: 2 s of health < 3 s.
	rec, ok := Recovery(recs, start.Add(20*time.Second), start.Add(40*time.Second))
	if ok || rec != 8*time.Second {
		t.Fatalf("recovery %v, ok %v; want 8s, not ok", rec, ok)
	}
	// Within a window ending at 26 s the last bad second is 25..26: no
	// healthy second left at all.
	if rec, ok := Recovery(recs, start.Add(20*time.Second), start.Add(26*time.Second)); ok || rec != 6*time.Second {
		t.Fatalf("recovery %v, ok %v; want 6s, not ok", rec, ok)
	}
	w := Window{ErrorPct: 0.05, RecoveryS: 12, Recovered: true}
	w.Judge(0.1, 10*time.Second)
	if w.Pass || w.Why != "recovery not under the bound" {
		t.Fatalf("slow recovery judged %v %q", w.Pass, w.Why)
	}
	w = Window{ErrorPct: 0.5, RecoveryS: 3}
	w.Judge(0.1, 10*time.Second)
	if w.Pass || w.Why != "errors above the bound and recovery not under it" {
		t.Fatalf("judged %v %q", w.Pass, w.Why)
	}
}
