package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms are a run's HDR histograms of latency (µs), each in the
// HdrHistogram V2 compressed, base64 encoding (a few hundred bytes to a
// few kB): what a merge needs to give the percentiles of the whole run
// exactly, not an average of the parts' percentiles.
type Histograms struct {
	All  string        `json:"all"`
	ByOp map[Op]string `json:"by_op"`
	// Seconds[t] is second t's (by answer time); "" when it had none.
	Seconds []string `json:"seconds"`
}

func encodeHist(h *hdrhistogram.Histogram) string {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		// Encoding into memory fails only on a histogram this package did
		// not build: a bug.
		panic(fmt.Sprintf("encode latency histogram: %v", err))
	}
	return string(b)
}

func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return newHist(), nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("decode latency histogram: %w", err)
	}
	return h, nil
}

// fill writes what the stats gathered into res.
func (s *stats) fill(res *Result) {
	res.Timeline = s.timeline()
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Totals, res.Orders = s.total, s.orders
	res.Latency = summarize(s.all)
	res.Codes = s.codes
	res.Distribution = distribution(s.all)
	hs := &Histograms{All: encodeHist(s.all), ByOp: map[Op]string{}, Seconds: make([]string, len(res.Timeline))}
	for i := range res.Timeline {
		if acc := s.seconds[i]; acc != nil {
			hs.Seconds[i] = acc.enc
			if acc.hist != nil {
				hs.Seconds[i] = encodeHist(acc.hist)
			}
		}
	}
	res.ByOp = map[Op]OpResult{}
	for _, op := range Ops {
		if c := s.byOp[op]; c.Offered > 0 {
			r := OpResult{Counts: *c, RefusedBy: s.refused[op]}
			if h := s.opHist[op]; h != nil {
				r.Latency = summarize(h)
				hs.ByOp[op] = encodeHist(h)
			}
			res.ByOp[op] = r
		}
	}
	res.Histograms = hs
}

// PartFile is what a part of a split run writes (WritePart) for Merge: its
// result with the histograms, and its order records for the audit.
type PartFile struct {
	Result  *Result  `json:"result"`
	Records []Record `json:"records"`
}

// partFileBytesMax bounds what ReadPart reads (RecordsMax records of a
// couple hundred bytes).
const partFileBytesMax = 2 << 30

// WritePart writes res and its records to path as JSON.
func WritePart(path string, res *Result) error {
	if res.Histograms == nil {
		return errors.New("write part: the result has no histograms")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(f).Encode(PartFile{Result: res, Records: res.Records}); err != nil {
		f.Close()
		return fmt.Errorf("write part %s: %w", path, err)
	}
	return f.Close()
}

// ReadPart reads a file WritePart wrote.
func ReadPart(path string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pf PartFile
	if err := json.NewDecoder(io.LimitReader(f, partFileBytesMax)).Decode(&pf); err != nil {
		return nil, fmt.Errorf("read part %s: %w", path, err)
	}
	if pf.Result == nil || pf.Result.Histograms == nil {
		return nil, fmt.Errorf("read part %s: no result with histograms", path)
	}
	pf.Result.Records = pf.Records
	return pf.Result, nil
}

// ErrMerge is wrapped by a set of parts that do not make one run.
var ErrMerge = errors.New("merge")

// Merge makes one result of the parts of a split run: every part 1..n of
// the same run exactly once. Counts add up; latencies come from the
// parts' histograms merged (so the percentiles are those of one histogram
// fed every answer); the timelines line up by second from each part's
// start; the records are all the parts'.
func Merge(parts []*Result) (*Result, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no parts", ErrMerge)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Part.Index < parts[j].Part.Index })
	n := parts[0].Part.norm().Count
	for i, p := range parts {
		switch {
		case p.Histograms == nil:
			return nil, fmt.Errorf("%w: part %s has no histograms", ErrMerge, p.Part)
		case p.RunID != parts[0].RunID || p.Seed != parts[0].Seed:
			return nil, fmt.Errorf("%w: part %s is of run %s (seed %d), part %s of %s (seed %d)", ErrMerge,
				p.Part, p.RunID, p.Seed, parts[0].Part, parts[0].RunID, parts[0].Seed)
		case p.Part.norm().Count != n || p.Part.norm().Index != i+1 || len(parts) != n:
			return nil, fmt.Errorf("%w: want parts 1/%d..%d/%d once each, have %s", ErrMerge, n, n, n, partList(parts))
		}
	}
	m := &Result{
		RunID: parts[0].RunID, Target: parts[0].Target, Profile: parts[0].Profile, Mix: parts[0].Mix,
		Seed: parts[0].Seed, Arrivals: parts[0].Arrivals, Parts: n, StartedAt: parts[0].StartedAt,
		ByOp: map[Op]OpResult{}, Codes: map[string]int64{},
	}
	all := newHist()
	byOp := map[Op]*hdrhistogram.Histogram{}
	var secs []*hdrhistogram.Histogram
	for _, p := range parts {
		if err := m.add(p, all, byOp, &secs); err != nil {
			return nil, err
		}
	}
	m.Latency, m.Distribution = summarize(all), distribution(all)
	hs := &Histograms{All: encodeHist(all), ByOp: map[Op]string{}, Seconds: make([]string, len(secs))}
	for op, h := range byOp {
		r := m.ByOp[op]
		r.Latency = summarize(h)
		m.ByOp[op] = r
		hs.ByOp[op] = encodeHist(h)
	}
	for t, h := range secs {
		m.Timeline[t].Latency = summarize(h)
		hs.Seconds[t] = encodeHist(h)
	}
	m.Histograms = hs
	return m, nil
}

// add adds part p into m and the merged histograms.
func (m *Result) add(p *Result, all *hdrhistogram.Histogram, byOp map[Op]*hdrhistogram.Histogram, secs *[]*hdrhistogram.Histogram) error {
	m.Customers += p.Customers
	m.Merchants = max(m.Merchants, p.Merchants)
	m.MaxInFlight += p.MaxInFlight
	if p.StartedAt.Before(m.StartedAt) {
		m.StartedAt = p.StartedAt
	}
	m.DurationSeconds = max(m.DurationSeconds, p.DurationSeconds)
	addCounts(&m.Totals, p.Totals)
	addCounts(&m.Orders, p.Orders)
	for k, v := range p.Codes {
		m.Codes[k] += v
	}
	m.RecordsTruncated = m.RecordsTruncated || p.RecordsTruncated
	m.Records = append(m.Records, p.Records...)
	for _, note := range p.Notes {
		m.Notes = append(m.Notes, fmt.Sprintf("part %s: %s", p.Part, note))
	}
	h, err := decodeHist(p.Histograms.All)
	if err != nil {
		return err
	}
	all.Merge(h)
	for op, r := range p.ByOp {
		mr := m.ByOp[op]
		addCounts(&mr.Counts, r.Counts)
		for k, v := range r.RefusedBy {
			if mr.RefusedBy == nil {
				mr.RefusedBy = map[string]int64{}
			}
			mr.RefusedBy[k] += v
		}
		m.ByOp[op] = mr
		if h, err = decodeHist(p.Histograms.ByOp[op]); err != nil {
			return err
		}
		if byOp[op] == nil {
			byOp[op] = newHist()
		}
		byOp[op].Merge(h)
	}
	for t, sec := range p.Timeline {
		for len(m.Timeline) <= t {
			m.Timeline = append(m.Timeline, Second{T: len(m.Timeline), Codes: map[string]int64{}})
			*secs = append(*secs, newHist())
		}
		addCounts(&m.Timeline[t].Counts, sec.Counts)
		for k, v := range sec.Codes {
			m.Timeline[t].Codes[k] += v
		}
		if t < len(p.Histograms.Seconds) {
			if h, err = decodeHist(p.Histograms.Seconds[t]); err != nil {
				return err
			}
			(*secs)[t].Merge(h)
		}
	}
	return nil
}

func addCounts(a *Counts, b Counts) {
	a.Offered += b.Offered
	a.Sent += b.Sent
	a.Dropped += b.Dropped
	a.Accepted += b.Accepted
	a.Rejected += b.Rejected
	a.Shed += b.Shed
	a.Failed += b.Failed
	a.Retries += b.Retries
}

func partList(parts []*Result) string {
	var s []string
	for _, p := range parts {
		s = append(s, p.Part.String())
	}
	return strings.Join(s, ", ")
}
