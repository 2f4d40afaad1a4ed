package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fundplatform/fund/loadtest"
)

// Files written by Write, inside its directory.
const (
	FileJSON = "report.json"
	FileHTML = "report.html"
)

// chartData is what every chart shows, computed once for the SVG and PNG
// renderings.
type chartData struct {
	id, title, xLabel, yLabel string
	x                         []float64
	series                    []series
	// bars instead of lines, for the distribution
	barLabels []string
	bars      []float64
	// markers are drawn over a time chart as bands with their names.
	markers []loadtest.Marker
}

func charts(res *loadtest.Result) []chartData {
	n := len(res.Timeline)
	x := make([]float64, n)
	col := func(f func(s loadtest.Second) float64) []float64 {
		out := make([]float64, n)
		for i, s := range res.Timeline {
			out[i] = f(s)
		}
		return out
	}
	for i, s := range res.Timeline {
		x[i] = float64(s.T)
	}
	rate := chartData{id: "rate", title: "Offered and accepted requests per second", xLabel: "seconds", yLabel: "requests/s", x: x,
		markers: res.Markers, series: []series{
			{"offered", palette[0], col(func(s loadtest.Second) float64 { return float64(s.Offered) })},
			{"accepted", palette[2], col(func(s loadtest.Second) float64 { return float64(s.Accepted) })},
			{"rejected (422)", palette[4], col(func(s loadtest.Second) float64 { return float64(s.Rejected) })},
			{"shed (429)", palette[1], col(func(s loadtest.Second) float64 { return float64(s.Shed) })},
			{"failed", palette[3], col(func(s loadtest.Second) float64 { return float64(s.Failed) })},
		}}
	// Seconds with no answer have no latency: leave a gap, not a zero.
	lat := func(f func(l loadtest.Latency) float64) []float64 {
		return col(func(s loadtest.Second) float64 {
			if s.Latency.Count == 0 {
				return math.NaN()
			}
			return f(s.Latency)
		})
	}
	latency := chartData{id: "latency", title: "Latency from the scheduled send time (ms)", xLabel: "seconds", yLabel: "ms", x: x,
		markers: res.Markers, series: []series{
			{"p50", palette[2], lat(func(l loadtest.Latency) float64 { return l.P50Ms })},
			{"p90", palette[0], lat(func(l loadtest.Latency) float64 { return l.P90Ms })},
			{"p99", palette[1], lat(func(l loadtest.Latency) float64 { return l.P99Ms })},
			{"p99.9", palette[3], lat(func(l loadtest.Latency) float64 { return l.P999Ms })},
		}}
	codes := map[string]bool{}
	for _, s := range res.Timeline {
		for c := range s.Codes {
			if !strings.HasPrefix(c, "2") {
				codes[c] = true
			}
		}
	}
	var names []string
	for c := range codes {
		names = append(names, c)
	}
	sort.Strings(names)
	errs := chartData{id: "errors", title: "Shed, rejected and failed answers by code, per second", xLabel: "seconds", yLabel: "answers/s", x: x,
		markers: res.Markers}
	for i, c := range names {
		errs.series = append(errs.series, series{codeName(c), palette[(i+1)%len(palette)],
			col(func(s loadtest.Second) float64 { return float64(s.Codes[c]) })})
	}
	dropped := col(func(s loadtest.Second) float64 { return float64(s.Dropped) })
	for _, v := range dropped {
		if v > 0 {
			errs.series = append(errs.series, series{"dropped (client)", palette[7], dropped})
			break
		}
	}
	dist := chartData{id: "distribution", title: "Latency distribution (all requests)", xLabel: "ms (bucket start, log-spaced)", yLabel: "requests"}
	for _, bk := range res.Distribution {
		dist.barLabels = append(dist.barLabels, num(bk.FromMs))
		dist.bars = append(dist.bars, float64(bk.Count))
	}
	return []chartData{rate, latency, errs, dist}
}

func codeName(c string) string {
	switch c {
	case "429":
		return "429 shed"
	case "422":
		return "422 rejected"
	case "503":
		return "503 unavailable"
	case "504":
		return "504 timeout"
	case "409":
		return "409 conflict"
	}
	return c
}

func (c chartData) svg() template.HTML {
	if c.x == nil {
		return template.HTML(barChart(c.id, c.title, c.xLabel, c.yLabel, c.barLabels, c.bars, palette[0]))
	}
	return template.HTML(lineChart(c.id, c.title, c.xLabel, c.yLabel, c.x, c.series, c.markers))
}

// Written lists the files Write produced.
type Written struct {
	JSON, HTML string
	PNGs       []string
}

// Write puts report.json, report.html and one PNG per chart in dir.
func Write(dir string, res *loadtest.Result) (Written, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Written{}, err
	}
	w := Written{JSON: filepath.Join(dir, FileJSON), HTML: filepath.Join(dir, FileHTML)}
	if err := writeFile(w.JSON, func(f io.Writer) error { return WriteJSON(f, res) }); err != nil {
		return w, err
	}
	if err := writeFile(w.HTML, func(f io.Writer) error { return WriteHTML(f, res) }); err != nil {
		return w, err
	}
	pngs, err := writePNGs(dir, charts(res))
	w.PNGs = pngs
	return w, err
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// WriteJSON writes the result as indented JSON.
func WriteJSON(w io.Writer, res *loadtest.Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

type headline struct {
	Label, Value, Class string
}

type opRow struct {
	Op string
	loadtest.OpResult
	// AcceptedPct is accepted of sent, in percent; Refusals the business
	// rules that refused the rest, the most frequent first.
	AcceptedPct, Refusals string
}

// windowRow is one row of the fault table.
type windowRow struct {
	loadtest.Window
	ErrorsByCode, Verdict, Class string
}

type page struct {
	R         *loadtest.Result
	Windows   []windowRow
	Headline  []headline
	Charts    []template.HTML
	Ops       []opRow
	Codes     []headline
	Generated string
	Peak      string
}

// WriteHTML writes one self-contained page: inline CSS, inline SVG charts,
// a few lines of inline script that mark each chart once the browser has
// laid it out (data-drawn), and nothing fetched from anywhere.
func WriteHTML(w io.Writer, res *loadtest.Result) error {
	p := page{R: res, Generated: time.Now().UTC().Format(time.RFC3339), Peak: num(res.Profile.Peak())}
	o := res.Orders
	p.Headline = []headline{
		{"orders sent", itoa(o.Sent), ""},
		{"acknowledged", itoa(o.Accepted + o.Rejected), ""},
		{"accepted", itoa(o.Accepted), ""},
		{"rejected (business rule)", itoa(o.Rejected) + " (" + percent(o.Rejected, o.Sent) + ")", ""},
		{"shed (429)", itoa(o.Shed), ""},
		{"failed", itoa(o.Failed), ""},
		{"dropped by generator", itoa(o.Dropped), ""},
	}
	if a := res.Audit; a != nil {
		p.Headline = append(p.Headline,
			headline{"lost", itoa(a.Lost), goodBad(a.Lost == 0)},
			headline{"duplicated", itoa(a.Duplicated), goodBad(a.Duplicated == 0)},
			headline{"half-applied", itoa(a.HalfApplied), goodBad(a.HalfApplied == 0)})
	} else {
		p.Headline = append(p.Headline, headline{"lost / duplicated", "not audited", ""})
	}
	for _, c := range charts(res) {
		p.Charts = append(p.Charts, c.svg())
	}
	for _, op := range loadtest.Ops {
		if r, ok := res.ByOp[op]; ok {
			p.Ops = append(p.Ops, opRow{Op: string(op), OpResult: r, AcceptedPct: percent(r.Accepted, r.Sent), Refusals: refusals(r.RefusedBy)})
		}
	}
	for _, w := range res.Windows {
		p.Windows = append(p.Windows, newWindowRow(w))
	}
	var codes []string
	for c := range res.Codes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		p.Codes = append(p.Codes, headline{Label: c, Value: itoa(res.Codes[c])})
	}
	return pageTmpl.Execute(w, p)
}

// newWindowRow formats a window for the fault table.
func newWindowRow(w loadtest.Window) windowRow {
	r := windowRow{Window: w, ErrorsByCode: refusals(w.ErrorsByCode), Verdict: "not judged"}
	if len(w.ErrorsByReason) > 0 { // the same errors, saying which component answered and why
		r.ErrorsByCode = refusals(w.ErrorsByReason)
	}
	if w.Judged {
		r.Verdict, r.Class = "within the bounds", "good"
		if !w.Pass {
			r.Verdict, r.Class = w.Why, "bad"
		}
	}
	return r
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// percent is n of all, "12.34%"; "-" of nothing.
func percent(n, all int64) string {
	if all == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(n)/float64(all), 'f', 2, 64) + "%"
}

// refusals formats refusal counts by reason, the most frequent first.
func refusals(m map[string]int64) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return m[ks[i]] > m[ks[j]] || m[ks[i]] == m[ks[j]] && ks[i] < ks[j] })
	out := ""
	for i, k := range ks {
		if i > 0 {
			out += ", "
		}
		out += k + " " + itoa(m[k])
	}
	if out == "" {
		return "-"
	}
	return out
}

func goodBad(ok bool) string {
	if ok {
		return "good"
	}
	return "bad"
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{"n": num}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Load test {{.R.RunID}}: {{.R.Profile.Name}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #555; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 8px 12px; min-width: 110px; }
.card .v { font-size: 22px; font-weight: 600; } .card .l { font-size: 12px; color: #555; }
.good .v { color: #087f23; } .bad .v { color: #b00020; }
table { border-collapse: collapse; font-size: 13px; } td, th { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
svg.chart { display: block; margin: 12px 0; background: #fff; border: 1px solid #eee; }
svg .title { font-size: 15px; font-weight: 600; fill: #222; } svg .tick { font-size: 11px; fill: #555; }
svg .label { font-size: 12px; fill: #333; } svg .legend { font-size: 12px; fill: #222; }
svg .grid { stroke: #eee; } svg .axis { stroke: #888; }
.problems { color: #b00020; font-size: 13px; }
tr.bad td { color: #b00020; } td:nth-child(2) { text-align: left; }
svg .fault-band { fill: #D55E00; fill-opacity: 0.13; } svg .fault-line { stroke: #D55E00; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .fault-label { font-size: 11px; fill: #A04000; }
</style>
</head>
<body>
<h1>Load test {{.R.RunID}}: {{.R.Profile.Name}} profile, peak {{.Peak}} requests/s</h1>
<div class="meta">target {{.R.Target}} · started {{.R.StartedAt.Format "2006-01-02 15:04:05 MST"}} · {{n .R.DurationSeconds}} s ·
{{.R.Customers}} customers (Zipf) · {{.R.Merchants}} merchants · mix {{.R.Mix}} · at most {{.R.MaxInFlight}} in flight · {{.R.Arrivals}} arrivals · seed {{.R.Seed}}{{if gt .R.Parts 1}} · {{.R.Parts}} generator processes merged{{end}}</div>
<div class="cards">{{range .Headline}}<div class="card {{.Class}}"><div class="v">{{.Value}}</div><div class="l">{{.Label}}</div></div>{{end}}</div>
<div class="meta">Latency of all requests, from the scheduled send time: p50 {{n .R.Latency.P50Ms}} ms · p90 {{n .R.Latency.P90Ms}} ms ·
p99 {{n .R.Latency.P99Ms}} ms · p99.9 {{n .R.Latency.P999Ms}} ms · max {{n .R.Latency.MaxMs}} ms</div>
{{range .R.Notes}}<p class="meta">{{.}}</p>{{end}}
{{with .R.Audit}}<h2>Audit against the books</h2>
<table><tr><th>check</th><th>result</th></tr>
<tr><td>order records checked</td><td>{{.Checked}}</td></tr>
<tr><td>acknowledged (accepted or rejected)</td><td>{{.Acknowledged}}</td></tr>
<tr><td>accepted and in the books exactly once, right amounts</td><td>{{.Applied}}</td></tr>
<tr><td>lost</td><td>{{.Lost}}</td></tr><tr><td>duplicated</td><td>{{.Duplicated}}</td></tr>
<tr><td>half-applied</td><td>{{.HalfApplied}}</td></tr>
<tr><td>wrong (other amounts or accounts, refused but moved, unsent but booked)</td><td>{{.Wrong}}</td></tr>
<tr><td>not acknowledged but applied whole (allowed)</td><td>{{.UnackedApplied}}</td></tr>
<tr><td>settled exactly once (subscriptions confirmed, standard redemptions paid)</td><td>{{.Settled}}</td></tr>
<tr><td>ledger verify, shards {{.Shards}}</td><td>{{if .LedgerVerified}}holds{{else}}FAILED{{end}}</td></tr>
<tr><td>reconciliation</td><td>{{if .ReconRan}}{{.ReconBreaks}} breaks: {{.Recon}}{{else if .Recon}}not checked: {{.Recon}}{{else}}not run{{end}}</td></tr>
<tr><td>verdict</td><td>{{if .OK}}OK{{else}}FAILED{{end}}</td></tr></table>
{{if .Problems}}<ul class="problems">{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}{{end}}
{{if .Windows}}<h2>Faults</h2>
<p class="meta">Each fault's window runs from its start to its end plus a tail; it counts every order due in it or still out when it began.
Errors are orders without an acknowledgement: an error answer (5xx) or none after the client's retries, or dropped by the generator.
Recovery is the time from the fault's start until the per-second success rate was back at 99% or more and stayed there (at least 3 s).</p>
<table id="faults"><tr><th>fault</th><th>what happened</th><th>fault s</th><th>window s</th><th>orders sent</th><th>errors</th><th>error %</th><th>errors by answer</th><th>shed</th><th>recovery s</th><th>verdict</th></tr>
{{range .Windows}}<tr class="{{.Class}}"><td>{{.Name}}</td><td>{{.Detail}}</td><td>{{n .StartS}}–{{n .FaultEndS}}</td><td>{{n .StartS}}–{{n .EndS}}</td><td>{{.Sent}}</td><td>{{.Errors}}</td><td>{{printf "%.3f" .ErrorPct}}%</td><td>{{.ErrorsByCode}}</td><td>{{.Shed}}</td><td>{{if .Recovered}}{{n .RecoveryS}}{{else}}not recovered{{end}}</td><td>{{.Verdict}}</td></tr>
{{end}}</table>{{end}}
<h2>Over time</h2>
{{range .Charts}}{{.}}
{{end}}
<h2>By operation</h2>
<table><tr><th>operation</th><th>offered</th><th>sent</th><th>accepted</th><th>accepted %</th><th>refused by a rule</th><th>refused by</th><th>shed</th><th>failed</th><th>dropped</th><th>retries</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>
{{range .Ops}}<tr><td>{{.Op}}</td><td>{{.Offered}}</td><td>{{.Sent}}</td><td>{{.Accepted}}</td><td>{{.AcceptedPct}}</td><td>{{.Rejected}}</td><td>{{.Refusals}}</td><td>{{.Shed}}</td><td>{{.Failed}}</td><td>{{.Dropped}}</td><td>{{.Retries}}</td><td>{{n .Latency.P50Ms}}</td><td>{{n .Latency.P99Ms}}</td><td>{{n .Latency.MaxMs}}</td></tr>
{{end}}</table>
<h2>Answers by code</h2>
<table><tr><th>code</th><th>answers</th></tr>{{range .Codes}}<tr><td>{{.Label}}</td><td>{{.Value}}</td></tr>{{end}}</table>
<p class="meta">Generated {{.Generated}} by fundctl loadtest. Charts are inline SVG; PNG copies sit next to this file.</p>
<script>
// Mark every chart the browser actually laid out with something in it.
(function () {
  var drawn = 0;
  document.querySelectorAll("svg.chart").forEach(function (svg) {
    var box = svg.getBoundingClientRect(), marks = 0;
    svg.querySelectorAll(".mark").forEach(function (m) {
      var b = m.getBBox();
      if (b.width > 0 || b.height > 0) { marks++; }
    });
    if (box.width > 0 && box.height > 0 && marks > 0) {
      svg.setAttribute("data-drawn", String(marks));
      drawn++;
    }
  });
  document.body.setAttribute("data-charts-drawn", String(drawn));
  // And every fault marker it laid out with a width (a band or a line).
  var faults = 0;
  document.querySelectorAll("svg.chart .fault-band").forEach(function (m) {
    if (m.getBBox().width > 0 && m.getBBox().height > 0) { faults++; }
  });
  document.body.setAttribute("data-markers-drawn", String(faults));
})();
</script>
</body>
</html>
`))
