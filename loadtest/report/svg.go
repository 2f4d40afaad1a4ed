package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"

	"github.com/fundplatform/fund/loadtest"
)

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 900.0, 320.0
	padL, padR     = 70.0, 160.0 // the right margin holds the legend
	padT, padB     = 36.0, 46.0
)

// series is one line of a chart.
type series struct {
	Name  string
	Color string
	Y     []float64
}

// palette is colour-blind-friendly (Okabe-Ito).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"}

// niceTicks returns about n round tick values covering [0, hi].
func niceTicks(hi float64, n int) []float64 {
	if hi <= 0 || math.IsNaN(hi) || math.IsInf(hi, 0) {
		hi = 1
	}
	raw := hi / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []float64
	for v := 0.0; v <= hi+step*0.999; v += step {
		ts = append(ts, v)
	}
	return ts
}

func num(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func coord(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// lineChart draws series over x (seconds) as an inline SVG. Every series
// is a polyline with class "mark"; the page's check counts them. Markers
// are drawn under the series (drawMarkers).
func lineChart(id, title, xLabel, yLabel string, x []float64, ss []series, markers []loadtest.Marker) string {
	var b strings.Builder
	yMax, xMax := 0.0, 0.0
	for _, s := range ss {
		for _, v := range s.Y {
			if !math.IsNaN(v) {
				yMax = math.Max(yMax, v)
			}
		}
	}
	for _, v := range x {
		xMax = math.Max(xMax, v)
	}
	for _, m := range markers {
		xMax = math.Max(xMax, m.EndS)
	}
	if xMax == 0 {
		xMax = 1
	}
	yt := niceTicks(yMax, 5)
	xt := niceTicks(xMax, 8)
	yTop, xRight := yt[len(yt)-1], xt[len(xt)-1]
	pw, ph := chartW-padL-padR, chartH-padT-padB
	px := func(v float64) float64 { return padL + v/xRight*pw }
	py := func(v float64) float64 { return padT + ph - v/yTop*ph }

	fmt.Fprintf(&b, `<svg class="chart" id="%s" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
		id, chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%s" y="22" class="title">%s</text>`, coord(padL), html.EscapeString(title))
	for _, v := range yt {
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/>`, coord(padL), coord(py(v)), coord(padL+pw), coord(py(v)))
		fmt.Fprintf(&b, `<text x="%s" y="%s" class="tick" text-anchor="end">%s</text>`, coord(padL-6), coord(py(v)+4), num(v))
	}
	for _, v := range xt {
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, coord(px(v)), coord(padT+ph), coord(px(v)), coord(padT+ph+4))
		fmt.Fprintf(&b, `<text x="%s" y="%s" class="tick" text-anchor="middle">%s</text>`, coord(px(v)), coord(padT+ph+18), num(v))
	}
	fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, coord(padL), coord(padT+ph), coord(padL+pw), coord(padT+ph))
	fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, coord(padL), coord(padT), coord(padL), coord(padT+ph))
	fmt.Fprintf(&b, `<text x="%s" y="%s" class="label" text-anchor="middle">%s</text>`, coord(padL+pw/2), coord(chartH-6), html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%s" class="label" text-anchor="middle" transform="rotate(-90 14 %s)">%s</text>`,
		coord(padT+ph/2), coord(padT+ph/2), html.EscapeString(yLabel))
	drawMarkers(&b, markers, px, ph)
	for i, s := range ss {
		var pts []string
		for j, v := range s.Y {
			if j < len(x) && !math.IsNaN(v) {
				pts = append(pts, coord(px(x[j]))+","+coord(py(v)))
			}
		}
		if len(pts) == 1 { // a single point still shows
			pts = append(pts, pts[0])
		}
		fmt.Fprintf(&b, `<polyline class="mark" fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`,
			s.Color, strings.Join(pts, " "), html.EscapeString(s.Name))
		ly := padT + 10 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"/>`, coord(padL+pw+14), coord(ly), coord(padL+pw+34), coord(ly), s.Color)
		fmt.Fprintf(&b, `<text x="%s" y="%s" class="legend">%s</text>`, coord(padL+pw+40), coord(ly+4), html.EscapeString(s.Name))
	}
	if len(ss) == 0 {
		fmt.Fprintf(&b, `<text x="%s" y="%s" class="label" text-anchor="middle">none</text>`, coord(padL+pw/2), coord(padT+ph/2))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// markerWidthMin is the width of the band of a marker of (almost) no
// length, so that it still shows.
const markerWidthMin = 2.0

// drawMarkers draws each marker as a translucent band (class
// "fault-band") from its start to its end over the plot's height, a
// dashed line at its start and its name at the top, staggered over three
// rows so that the names of close markers do not overlap; its title says
// the times and what happened.
func drawMarkers(b *strings.Builder, markers []loadtest.Marker, px func(float64) float64, ph float64) {
	for i, m := range markers {
		x0, x1 := px(math.Max(m.StartS, 0)), px(math.Max(m.EndS, m.StartS))
		tip := fmt.Sprintf("%s: %s–%s s", m.Name, num(m.StartS), num(m.EndS))
		if m.Detail != "" {
			tip += " (" + m.Detail + ")"
		}
		fmt.Fprintf(b, `<g class="fault" data-name="%s"><title>%s</title>`, html.EscapeString(m.Name), html.EscapeString(tip))
		fmt.Fprintf(b, `<rect class="fault-band" x="%s" y="%s" width="%s" height="%s"/>`,
			coord(x0), coord(padT), coord(math.Max(x1-x0, markerWidthMin)), coord(ph))
		fmt.Fprintf(b, `<line class="fault-line" x1="%s" y1="%s" x2="%s" y2="%s"/>`, coord(x0), coord(padT), coord(x0), coord(padT+ph))
		fmt.Fprintf(b, `<text class="fault-label" x="%s" y="%s">%s</text></g>`,
			coord(x0+3), coord(padT+12+float64(i%3)*13), html.EscapeString(m.Name))
	}
}

// barChart draws labelled bars (the latency distribution: equal-width bars
// over log-spaced buckets). Every bar is a rect with class "mark".
func barChart(id, title, xLabel, yLabel string, labels []string, counts []float64, color string) string {
	var b strings.Builder
	yMax := 0.0
	for _, v := range counts {
		yMax = math.Max(yMax, v)
	}
	yt := niceTicks(yMax, 5)
	yTop := yt[len(yt)-1]
	pw, ph := chartW-padL-padR/4, chartH-padT-padB
	py := func(v float64) float64 { return padT + ph - v/yTop*ph }
	fmt.Fprintf(&b, `<svg class="chart" id="%s" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
		id, chartW, chartH, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="%s" y="22" class="title">%s</text>`, coord(padL), html.EscapeString(title))
	for _, v := range yt {
		fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="grid"/>`, coord(padL), coord(py(v)), coord(padL+pw), coord(py(v)))
		fmt.Fprintf(&b, `<text x="%s" y="%s" class="tick" text-anchor="end">%s</text>`, coord(padL-6), coord(py(v)+4), num(v))
	}
	n := max(len(counts), 1)
	bw := pw / float64(n)
	every := max(1, (n+11)/12) // at most a dozen labels
	for i, v := range counts {
		x := padL + float64(i)*bw
		fmt.Fprintf(&b, `<rect class="mark" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s ms: %s</title></rect>`,
			coord(x+1), coord(py(v)), coord(math.Max(bw-2, 1)), coord(padT+ph-py(v)), color, html.EscapeString(labels[i]), num(v))
		if i%every == 0 {
			fmt.Fprintf(&b, `<text x="%s" y="%s" class="tick" text-anchor="middle">%s</text>`, coord(x+bw/2), coord(padT+ph+18), html.EscapeString(labels[i]))
		}
	}
	fmt.Fprintf(&b, `<line x1="%s" y1="%s" x2="%s" y2="%s" class="axis"/>`, coord(padL), coord(padT+ph), coord(padL+pw), coord(padT+ph))
	fmt.Fprintf(&b, `<text x="%s" y="%s" class="label" text-anchor="middle">%s</text>`, coord(padL+pw/2), coord(chartH-6), html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%s" class="label" text-anchor="middle" transform="rotate(-90 14 %s)">%s</text>`,
		coord(padT+ph/2), coord(padT+ph/2), html.EscapeString(yLabel))
	b.WriteString(`</svg>`)
	return b.String()
}
