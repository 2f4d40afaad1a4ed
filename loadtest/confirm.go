package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Limits of ConfirmShares.
const (
	confirmBackfillDaysMax = 62 // unsettled days before the setup's it settles first
	confirmPollMax         = 60 // polls of a settlement that answered before it finished
	confirmPollStep        = 500 * time.Millisecond
	confirmProbesMax       = 8
	// setupSettleTime is the business time the setup moves a test clock to
	// on the last confirm date: past its 15:00 cut-off, so that the date
	// can be settled, and an afternoon, as a Double-11 evening is.
	setupSettleTime = "T15:30:00+08:00"
)

// ErrNotConfirmed: the setup settled its dates but a customer's
// subscription is still pending.
var ErrNotConfirmed = errors.New("setup subscriptions not confirmed")

// ConfirmConfig says what to settle so that the setup's subscriptions are
// confirmed shares.
type ConfirmConfig struct {
	Target     string
	AdminToken string
	// TradeDate and ConfirmDate (YYYY-MM-DD): the earliest trade date and
	// the latest confirm date of the setup's subscriptions.
	TradeDate, ConfirmDate string
	// IncomePer10k is each settled day's income per 10,000 shares
	// ("0.6500"); "" = "0.0000".
	IncomePer10k string
	// RunID makes the idempotency keys of the clock move and the
	// settlements: the parts of a split run, sharing the setup's run id,
	// move the clock and settle each date once between them.
	RunID string
	// Probes are a few customers (at most confirmProbesMax are looked at)
	// whose holdings must show no pending shares afterwards.
	Probes []int64
}

// Confirmed is what ConfirmShares did.
type Confirmed struct {
	// TestClock is false when the target runs on the wall clock: nothing
	// was moved or settled, and the setup's shares stay pending until the
	// platform's own settlement confirms them.
	TestClock bool     `json:"test_clock"`
	Now       string   `json:"now,omitempty"` // the business time afterwards
	Settled   []string `json:"settled,omitempty"`
	Probed    int      `json:"probed,omitempty"`
}

// ConfirmShares brings the setup's subscriptions to confirmed shares on a
// sandbox: when GET /v1/admin/clock says the target runs a test clock, it
// moves the clock past ConfirmDate's cut-off and settles every date from
// TradeDate through ConfirmDate (after any unsettled earlier ones the
// platform asks for first), each once (idempotency keys), then checks the
// probes' holdings. Against a wall clock it changes nothing and says so
// (TestClock false). Every call is bounded: setupCall's retries, at most
// confirmBackfillDaysMax extra days, confirmPollMax polls per date.
func ConfirmShares(ctx context.Context, cfg ConfirmConfig) (*Confirmed, error) {
	u, err := CheckTarget(cfg.Target, true)
	if err != nil {
		return nil, err
	}
	c := &adminClient{api: newAPI(u.String(), 4), token: cfg.AdminToken, runID: cfg.RunID}
	defer c.api.close()
	clk, ok, err := c.clock(ctx)
	if err != nil || !ok {
		return &Confirmed{}, err
	}
	out := &Confirmed{TestClock: true, Now: clk.Now}
	if cfg.ConfirmDate == "" {
		return out, nil // nothing subscribed
	}
	first, err1 := time.Parse(time.DateOnly, cfg.TradeDate)
	last, err2 := time.Parse(time.DateOnly, cfg.ConfirmDate)
	if err1 != nil || err2 != nil || last.Before(first) || last.Sub(first) > confirmBackfillDaysMax*24*time.Hour {
		return nil, fmt.Errorf("setup dates %q..%q: want YYYY-MM-DD, in order, at most %d days apart",
			cfg.TradeDate, cfg.ConfirmDate, confirmBackfillDaysMax)
	}
	if out.Now, err = c.advance(ctx, clk.Now, cfg.ConfirmDate+setupSettleTime); err != nil {
		return nil, err
	}
	income := cfg.IncomePer10k
	if income == "" {
		income = "0.0000"
	}
	backfill := 0
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		earlier, err := c.settle(ctx, d.Format(time.DateOnly), income)
		if err != nil {
			return nil, err
		}
		if earlier.IsZero() {
			out.Settled = append(out.Settled, d.Format(time.DateOnly))
			continue
		}
		// The platform has unsettled days before ours (a sandbox whose
		// clock was moved on without settling): settle those first.
		backfill += int(d.Sub(earlier) / (24 * time.Hour))
		if !earlier.Before(d) || backfill > confirmBackfillDaysMax {
			return nil, fmt.Errorf("settle %s: the platform wants %s first: more than %d days back",
				d.Format(time.DateOnly), earlier.Format(time.DateOnly), confirmBackfillDaysMax)
		}
		d = earlier.AddDate(0, 0, -1)
	}
	for _, p := range cfg.Probes[:min(len(cfg.Probes), confirmProbesMax)] {
		if err := c.confirmed(ctx, p); err != nil {
			return nil, err
		}
		out.Probed++
	}
	return out, nil
}

// adminClient makes the admin calls of ConfirmShares.
type adminClient struct {
	api   *api
	token string
	runID string
}

type clockView struct {
	Now               string `json:"now"`
	TestClock         bool   `json:"test_clock"`
	SettleableThrough string `json:"settleable_through"`
}

// clock reads GET /v1/admin/clock; ok is false on a wall clock (or a
// gateway too old to have the call).
func (c *adminClient) clock(ctx context.Context) (clockView, bool, error) {
	a := c.call(ctx, "GET", "/v1/admin/clock", "", nil)
	var v clockView
	switch {
	case a.Err != nil:
		return v, false, fmt.Errorf("%w: GET /v1/admin/clock: %v", ErrSetup, a.Err)
	case a.Status == 404 || a.Status == 501:
		return v, false, nil
	case a.Status != 200:
		return v, false, fmt.Errorf("%w: GET /v1/admin/clock: %d %.300s", ErrSetup, a.Status, a.Body)
	}
	if err := json.Unmarshal(a.Body, &v); err != nil {
		return v, false, fmt.Errorf("%w: GET /v1/admin/clock: %v", ErrSetup, err)
	}
	return v, v.TestClock, nil
}

// advance moves the test clock to `to` unless it is there or past it
// already (another part of a split run moved it further).
func (c *adminClient) advance(ctx context.Context, now, to string) (string, error) {
	t, err1 := time.Parse(time.RFC3339Nano, now)
	target, err2 := time.Parse(time.RFC3339, to)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("%w: clock times %q, %q: want RFC 3339", ErrSetup, now, to)
	}
	if !t.Before(target) {
		return now, nil
	}
	a := c.call(ctx, "POST", "/v1/admin/clock:advance", c.runID+"-clock-"+to[:10], map[string]string{"to": to})
	if a.Err == nil && a.Status == 400 && reasonOf(a.Body) == "CLOCK_BACKWARDS" {
		clk, _, err := c.clock(ctx) // moved past `to` by someone else meanwhile
		return clk.Now, err
	}
	if a.Err != nil || a.Status != 200 {
		return "", fmt.Errorf("%w: move the test clock to %s: %s", ErrSetup, to, describe(a))
	}
	var v clockView
	_ = json.Unmarshal(a.Body, &v)
	return v.Now, nil
}

// earlierDate finds the date the platform wants settled first in a
// SETTLEMENT_OUT_OF_ORDER message.
var earlierDate = regexp.MustCompile(`cannot be settled before (\d{4}-\d{2}-\d{2})`)

// settle settles date once: nothing when it is settled already; the
// date to settle first when an earlier one is not (zero otherwise).
func (c *adminClient) settle(ctx context.Context, date, incomePer10k string) (earlier time.Time, err error) {
	if done, err := c.settled(ctx, date); err != nil || done {
		return time.Time{}, err
	}
	a := c.call(ctx, "POST", "/v1/admin/settlements", c.runID+"-settle-"+date,
		map[string]string{"date": date, "income_per_10k": incomePer10k})
	if a.Err == nil && reasonOf(a.Body) == "SETTLEMENT_OUT_OF_ORDER" {
		msg := messageOf(a.Body)
		if strings.Contains(msg, "a later date, is settled") {
			return time.Time{}, nil // settled past it already: ours with it
		}
		if m := earlierDate.FindStringSubmatch(msg); m != nil && m[1] < date {
			return time.Parse(time.DateOnly, m[1])
		}
	}
	if a.Err != nil || a.Status != 200 {
		return time.Time{}, fmt.Errorf("%w: settle %s: %s", ErrSetup, date, describe(a))
	}
	for i := 0; i < confirmPollMax; i++ {
		if done, err := c.settled(ctx, date); err != nil || done {
			return time.Time{}, err
		}
		if err := sleepCtx(ctx, confirmPollStep); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("%w: settle %s: not completed after %s", ErrSetup, date, confirmPollMax*confirmPollStep)
}

// settled reports whether date's run completed; a failed run is an error.
func (c *adminClient) settled(ctx context.Context, date string) (bool, error) {
	a := c.call(ctx, "GET", "/v1/admin/settlements/"+date, "", nil)
	if a.Err == nil && a.Status == 404 {
		return false, nil
	}
	if a.Err != nil || a.Status != 200 {
		return false, fmt.Errorf("%w: GET settlement %s: %s", ErrSetup, date, describe(a))
	}
	var s struct{ Status, Message string }
	_ = json.Unmarshal(a.Body, &s)
	switch strings.TrimPrefix(strings.ToUpper(s.Status), "SETTLEMENT_STATUS_") {
	case "COMPLETED":
		return true, nil
	case "FAILED":
		return false, fmt.Errorf("%w: settlement %s failed: %s", ErrSetup, date, s.Message)
	}
	return false, nil
}

// confirmed checks that customer p holds no pending shares.
func (c *adminClient) confirmed(ctx context.Context, p int64) error {
	a := c.call(ctx, "GET", "/v1/customers/"+strconv.FormatInt(p, 10)+"/holdings", "", nil)
	if a.Err != nil || a.Status != 200 {
		return fmt.Errorf("%w: holdings of %d: %s", ErrSetup, p, describe(a))
	}
	var h struct {
		Shares        string `json:"shares"`
		SharesPending string `json:"shares_pending"`
	}
	_ = json.Unmarshal(a.Body, &h)
	if pending := strings.Trim(strings.ReplaceAll(h.SharesPending, ".", ""), "0"); pending != "" {
		return fmt.Errorf("%w: customer %d: shares %s, pending %s", ErrNotConfirmed, p, h.Shares, h.SharesPending)
	}
	return nil
}

// call is one admin call, sent again with the same key on 429, 502, 503,
// 504 and transport errors, at most setupAttemptsMax times with a
// doubling pause; it returns the last answer.
func (c *adminClient) call(ctx context.Context, method, path, key string, body any) answer {
	pause := 50 * time.Millisecond
	var a answer
	for attempt := 0; attempt < setupAttemptsMax; attempt++ {
		actx, cancel := context.WithTimeout(ctx, setupTimeout)
		a = c.api.do(actx, method, path, c.token, key, body)
		cancel()
		retry := a.Err != nil || a.Status == 429 || a.Status == 502 || a.Status == 503 || a.Status == 504
		if !retry || ctx.Err() != nil || sleepCtx(ctx, pause) != nil {
			return a
		}
		pause = min(2*pause, setupBackoffMax)
	}
	return a
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func describe(a answer) string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return fmt.Sprintf("%d %.400s", a.Status, a.Body)
}
