package report

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writePNGs renders each chart with gonum/plot as <id>.png in dir.
func writePNGs(dir string, cs []chartData) ([]string, error) {
	var out []string
	for _, c := range cs {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = c.xLabel
		p.Y.Label.Text = c.yLabel
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		if c.x == nil {
			if err := addBars(p, c); err != nil {
				return out, fmt.Errorf("chart %s: %w", c.id, err)
			}
		} else {
			for _, s := range c.series {
				if err := addLine(p, c.x, s); err != nil {
					return out, fmt.Errorf("chart %s: %w", c.id, err)
				}
			}
			if err := addMarkers(p, c); err != nil {
				return out, fmt.Errorf("chart %s: %w", c.id, err)
			}
		}
		path := filepath.Join(dir, c.id+".png")
		if err := p.Save(9*vg.Inch, 3.5*vg.Inch, path); err != nil {
			return out, fmt.Errorf("chart %s: %w", c.id, err)
		}
		out = append(out, path)
	}
	return out, nil
}

func addLine(p *plot.Plot, x []float64, s series) error {
	var xy plotter.XYs
	for i, v := range s.Y {
		if i < len(x) && !math.IsNaN(v) {
			xy = append(xy, plotter.XY{X: x[i], Y: v})
		}
	}
	if len(xy) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color = hexColor(s.Color)
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(s.Name, l)
	return nil
}

// addMarkers draws each marker as a dashed vertical line at its start,
// over the height of the chart's series, with its name at the top.
func addMarkers(p *plot.Plot, c chartData) error {
	yMax := 0.0
	for _, s := range c.series {
		for _, v := range s.Y {
			if !math.IsNaN(v) {
				yMax = math.Max(yMax, v)
			}
		}
	}
	if len(c.markers) == 0 || yMax == 0 {
		return nil
	}
	var labels plotter.XYLabels
	for _, m := range c.markers {
		l, err := plotter.NewLine(plotter.XYs{{X: m.StartS, Y: 0}, {X: m.StartS, Y: yMax}})
		if err != nil {
			return err
		}
		l.Color = hexColor(palette[3])
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		labels.XYs = append(labels.XYs, plotter.XY{X: m.StartS, Y: yMax})
		labels.Labels = append(labels.Labels, m.Name)
	}
	ls, err := plotter.NewLabels(labels)
	if err != nil {
		return err
	}
	p.Add(ls)
	return nil
}

func addBars(p *plot.Plot, c chartData) error {
	if len(c.bars) == 0 {
		return nil
	}
	b, err := plotter.NewBarChart(plotter.Values(c.bars), vg.Points(10))
	if err != nil {
		return err
	}
	b.Color = hexColor(palette[0])
	b.LineStyle.Width = 0
	p.Add(b)
	p.NominalX(c.barLabels...)
	return nil
}

func hexColor(s string) color.Color {
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if len(s) != 7 || err != nil {
		return color.Black
	}
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 255}
}
