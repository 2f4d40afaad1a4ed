package local

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind names a fault the cluster can inject (Cluster.Inject).
type FaultKind string

// The faults of a rehearsal.
const (
	// FaultKillOwner: kill -9 of the owner holding the most shards; the
	// supervisor restarts it (For > 0: not before For, a lost machine, so
	// that the other owners take its shards when its leases expire).
	FaultKillOwner FaultKind = "kill-owner"
	// FaultKillGateway: kill -9 of a gateway (Target, or gateway-0); the
	// supervisor restarts it.
	FaultKillGateway FaultKind = "kill-gateway"
	// FaultPostgresRestart: pg_ctl restart -m immediate of the cluster's
	// Postgres, every database at once.
	FaultPostgresRestart FaultKind = "postgres-restart"
	// FaultStopOwner: SIGSTOP of the owner holding the most shards for
	// For (past its lease), then SIGCONT.
	FaultStopOwner FaultKind = "stop-owner"
	// FaultStopRecon: the reconciliation worker killed and kept down for
	// For, then restarted.
	FaultStopRecon FaultKind = "stop-recon"
	// FaultKillSettle: the next business date's settlement started (its
	// income file written, the test clock moved past its end) and fundd
	// settle killed with SIGKILL in the middle of the run; the supervisor
	// restarts it and the run resumes. Needs Config.TestClock.
	FaultKillSettle FaultKind = "kill-settle"
	// FaultBrokerDown: the Kafka broker unreachable for For, its data kept.
	FaultBrokerDown FaultKind = "broker-down"
)

// faultKinds are the known kinds, with how long each lasts when it has no
// For (a plan's estimate, for checking that windows do not overlap) and
// whether it needs a For.
var faultKinds = map[FaultKind]struct {
	expected time.Duration
	needsFor bool
}{
	FaultKillOwner:       {expected: 6 * time.Second},
	FaultKillGateway:     {expected: 2 * time.Second},
	FaultPostgresRestart: {expected: 3 * time.Second},
	FaultStopOwner:       {needsFor: true},
	FaultStopRecon:       {needsFor: true},
	FaultKillSettle:      {expected: 15 * time.Second},
	FaultBrokerDown:      {needsFor: true},
}

// Bounds of a schedule.
const (
	faultsMax      = 64
	faultForMax    = 5 * time.Minute
	scheduleBytes  = 1 << 20
	TailDefault    = 10 * time.Second // after each fault, in its window
	tailMax        = 5 * time.Minute
	scheduleRunMax = 24 * time.Hour
)

// Schedule is a rehearsal's faults, read from a JSON file:
//
//	{"duration": "10m", "tail": "10s", "faults": [
//	  {"kind": "broker-down", "at": "10%", "for": "10s"},
//	  {"kind": "kill-owner", "at": "95s"}]}
type Schedule struct {
	Description string `json:"description,omitempty"`
	// Duration is the run the schedule was written for; a run of another
	// length takes it as its default (fundctl rehearse --duration).
	Duration Duration `json:"duration,omitempty"`
	// Tail is how long after its end a fault's window lasts [10s].
	Tail   Duration `json:"tail,omitempty"`
	Faults []Fault  `json:"faults"`
}

// Fault is one fault of a schedule.
type Fault struct {
	Kind FaultKind `json:"kind"`
	Name string    `json:"name,omitempty"` // its label on the charts [its kind]
	// At is when it starts: a duration from the run's start ("95s") or a
	// share of the run ("43%").
	At Offset `json:"at"`
	// For is how long it lasts, for the kinds that last (stop-owner,
	// stop-recon, broker-down; kill-owner: how long the owner stays down).
	For    Duration `json:"for,omitempty"`
	Target string   `json:"target,omitempty"` // kill-gateway: which one [gateway-0]
}

// Label is the fault's name on the charts and in the table.
func (f Fault) Label() string {
	if f.Name != "" {
		return f.Name
	}
	return string(f.Kind)
}

// Duration is a time.Duration written as a string ("10s") in JSON.
type Duration time.Duration

// UnmarshalJSON reads "10s", "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"10s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q: negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the string form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Offset is when a fault starts: a duration, or a share of the run in
// percent.
type Offset struct {
	After   time.Duration
	Percent float64 // used when IsShare
	IsShare bool
}

// UnmarshalJSON reads "95s" or "43%".
func (o *Offset) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("offset %s: want a string such as \"95s\" or \"43%%\"", b)
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || v >= 100 {
			return fmt.Errorf("offset %q: want a share of the run in [0, 100)%%", s)
		}
		*o = Offset{Percent: v, IsShare: true}
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("offset %q: want a duration from the run's start (\"95s\") or a share (\"43%%\")", s)
	}
	*o = Offset{After: v}
	return nil
}

// MarshalJSON writes the string form.
func (o Offset) MarshalJSON() ([]byte, error) {
	if o.IsShare {
		return json.Marshal(strconv.FormatFloat(o.Percent, 'f', -1, 64) + "%")
	}
	return json.Marshal(o.After.String())
}

// of is the offset in a run of length run.
func (o Offset) of(run time.Duration) time.Duration {
	if o.IsShare {
		return time.Duration(o.Percent / 100 * float64(run)).Round(10 * time.Millisecond)
	}
	return o.After
}

// ErrSchedule is wrapped by every error of a schedule that cannot be run.
var ErrSchedule = errors.New("fault schedule")

//go:embed rehearsal/double11.json
var defaultSchedule []byte

// DefaultSchedule is deploy/local/rehearsal/double11.json: every fault
// once, the heavy ones at a Double-11 profile's midnight peak.
func DefaultSchedule() Schedule {
	s, err := ParseSchedule(bytes.NewReader(defaultSchedule))
	if err != nil {
		panic(fmt.Sprintf("the embedded default schedule: %v", err)) // the test catches it first
	}
	return s
}

// ReadSchedule reads a schedule file.
func ReadSchedule(path string) (Schedule, error) {
	f, err := os.Open(path)
	if err != nil {
		return Schedule{}, err
	}
	defer f.Close()
	s, err := ParseSchedule(f)
	if err != nil {
		return Schedule{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSchedule reads a schedule and checks each fault on its own (a
// known kind, a For where it needs one and within bounds); Plan checks
// them together against a run's length.
func ParseSchedule(r io.Reader) (Schedule, error) {
	dec := json.NewDecoder(io.LimitReader(r, scheduleBytes))
	dec.DisallowUnknownFields()
	var s Schedule
	if err := dec.Decode(&s); err != nil {
		return Schedule{}, fmt.Errorf("%w: %v", ErrSchedule, err)
	}
	if dec.More() {
		return Schedule{}, fmt.Errorf("%w: more than one JSON value", ErrSchedule)
	}
	switch {
	case len(s.Faults) == 0:
		return Schedule{}, fmt.Errorf("%w: no faults", ErrSchedule)
	case len(s.Faults) > faultsMax:
		return Schedule{}, fmt.Errorf("%w: %d faults, at most %d", ErrSchedule, len(s.Faults), faultsMax)
	case time.Duration(s.Tail) > tailMax:
		return Schedule{}, fmt.Errorf("%w: tail %s, at most %s", ErrSchedule, time.Duration(s.Tail), tailMax)
	case time.Duration(s.Duration) > scheduleRunMax:
		return Schedule{}, fmt.Errorf("%w: duration %s, at most %s", ErrSchedule, time.Duration(s.Duration), scheduleRunMax)
	}
	for i, f := range s.Faults {
		if err := f.check(); err != nil {
			return Schedule{}, fmt.Errorf("%w: fault %d (%s): %v", ErrSchedule, i+1, f.Label(), err)
		}
	}
	return s, nil
}

func (f Fault) check() error {
	k, ok := faultKinds[f.Kind]
	if !ok {
		var kinds []string
		for k := range faultKinds {
			kinds = append(kinds, string(k))
		}
		slices.Sort(kinds)
		return fmt.Errorf("unknown kind %q: want one of %s", f.Kind, strings.Join(kinds, ", "))
	}
	switch d := time.Duration(f.For); {
	case k.needsFor && d == 0:
		return fmt.Errorf(`%s needs "for" (how long it lasts)`, f.Kind)
	case d > faultForMax:
		return fmt.Errorf("for %s: at most %s", d, faultForMax)
	case d > 0 && !k.needsFor && f.Kind != FaultKillOwner:
		return fmt.Errorf(`%s takes no "for"`, f.Kind)
	}
	if f.Target != "" && f.Kind != FaultKillGateway {
		return fmt.Errorf(`%s takes no "target"`, f.Kind)
	}
	if f.Target != "" && !strings.HasPrefix(f.Target, "gateway-") {
		return fmt.Errorf("target %q: want a gateway's name (gateway-0, gateway-1, ...)", f.Target)
	}
	return nil
}

// PlannedFault is a fault placed in a run: when it starts, and how long
// it is expected to last (its For, or an estimate for the kinds that last
// as long as the cluster takes to heal).
type PlannedFault struct {
	Fault
	At, Expected time.Duration
}

// Plan places the schedule's faults in a run of length run, in order of
// their start, and checks that each one's window (its expected length plus
// the tail) ends before the next one starts and before the run ends, so
// that every order is counted in one fault's window at most.
func (s Schedule) Plan(run time.Duration) ([]PlannedFault, error) {
	if run <= 0 {
		return nil, fmt.Errorf("%w: a run of %s", ErrSchedule, run)
	}
	tail := s.TailOr()
	out := make([]PlannedFault, 0, len(s.Faults))
	for _, f := range s.Faults {
		exp := faultKinds[f.Kind].expected
		if f.For > 0 {
			exp = max(exp, time.Duration(f.For))
		}
		out = append(out, PlannedFault{Fault: f, At: f.At.of(run), Expected: exp})
	}
	slices.SortStableFunc(out, func(a, b PlannedFault) int { return int(a.At - b.At) })
	for i, p := range out {
		end := p.At + p.Expected + tail
		if i+1 < len(out) && end > out[i+1].At {
			return nil, fmt.Errorf("%w: %s at %s (window to about %s) overlaps %s at %s in a run of %s",
				ErrSchedule, p.Label(), p.At, end, out[i+1].Label(), out[i+1].At, run)
		}
		if end > run {
			return nil, fmt.Errorf("%w: %s at %s: its window (to about %s) ends after the run (%s)",
				ErrSchedule, p.Label(), p.At, end, run)
		}
	}
	return out, nil
}

// TailOr is the schedule's tail, or TailDefault.
func (s Schedule) TailOr() time.Duration {
	if s.Tail == 0 {
		return TailDefault
	}
	return time.Duration(s.Tail)
}
