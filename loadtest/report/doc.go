// Package report turns a loadtest.Result into something to read: report.json
// (everything, machine-readable), report.html (one self-contained page:
// headline, audit, inline SVG charts over time and the latency
// distribution, tables; no external scripts, fonts or styles) and one PNG
// per chart drawn with gonum/plot, for pasting into a ticket.
//
//	written, err := report.Write("loadtest-report", res)
//	fmt.Println("open", written.HTML)
package report
