package loadtest

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits of a profile.
const (
	ProfilePointsMax = 10_000
	ProfileRateMax   = 1_000_000 // requests per second
	ProfileLengthMax = 24 * time.Hour
)

// Point is one knot of a profile: the arrival rate at a moment of the run.
type Point struct {
	At  time.Duration `json:"at"`
	RPS float64       `json:"rps"`
}

// Profile is the arrival rate over the run: straight lines between its
// points, which are in time order from At = 0. The rate after the last point
// is zero: the run is over. A profile is data; the built-in shapes are
// functions that return one.
type Profile struct {
	Name   string  `json:"name"`
	Points []Point `json:"points"`
}

// ErrProfile is wrapped by every profile validation error.
var ErrProfile = errors.New("invalid profile")

// Validate checks the points.
func (p Profile) Validate() error {
	if len(p.Points) < 2 {
		return fmt.Errorf("%w %q: want at least 2 points, have %d", ErrProfile, p.Name, len(p.Points))
	}
	if len(p.Points) > ProfilePointsMax {
		return fmt.Errorf("%w %q: %d points, at most %d", ErrProfile, p.Name, len(p.Points), ProfilePointsMax)
	}
	if p.Points[0].At != 0 {
		return fmt.Errorf("%w %q: first point at %s, want 0", ErrProfile, p.Name, p.Points[0].At)
	}
	for i, pt := range p.Points {
		if math.IsNaN(pt.RPS) || pt.RPS < 0 || pt.RPS > ProfileRateMax {
			return fmt.Errorf("%w %q: point %d rate %v: want 0..%d", ErrProfile, p.Name, i, pt.RPS, ProfileRateMax)
		}
		if i > 0 && pt.At < p.Points[i-1].At {
			return fmt.Errorf("%w %q: point %d at %s is before point %d", ErrProfile, p.Name, i, pt.At, i-1)
		}
	}
	if d := p.Duration(); d <= 0 || d > ProfileLengthMax {
		return fmt.Errorf("%w %q: length %s: want >0 and at most %s", ErrProfile, p.Name, d, ProfileLengthMax)
	}
	return nil
}

// Duration is the length of the run.
func (p Profile) Duration() time.Duration { return p.Points[len(p.Points)-1].At }

// Rate is the arrival rate at t, in requests per second.
func (p Profile) Rate(t time.Duration) float64 {
	pts := p.Points
	if t < 0 || t > pts[len(pts)-1].At {
		return 0
	}
	i := sort.Search(len(pts), func(i int) bool { return pts[i].At > t })
	if i == len(pts) {
		return pts[len(pts)-1].RPS
	}
	a, b := pts[i-1], pts[i]
	if b.At == a.At {
		return b.RPS
	}
	f := float64(t-a.At) / float64(b.At-a.At)
	return a.RPS + f*(b.RPS-a.RPS)
}

// Peak is the highest rate of the profile.
func (p Profile) Peak() float64 {
	m := 0.0
	for _, pt := range p.Points {
		m = max(m, pt.RPS)
	}
	return m
}

// Expected is the number of arrivals the whole profile asks for: the area
// under the rate.
func (p Profile) Expected() float64 {
	n := 0.0
	for i := 1; i < len(p.Points); i++ {
		a, b := p.Points[i-1], p.Points[i]
		n += (a.RPS + b.RPS) / 2 * (b.At - a.At).Seconds()
	}
	return n
}

// shape builds a profile from a normalised shape: times as fractions of d,
// rates as fractions of peak.
func shape(name string, d time.Duration, peak float64, knots [][2]float64) Profile {
	p := Profile{Name: name}
	for _, k := range knots {
		p.Points = append(p.Points, Point{At: time.Duration(k[0] * float64(d)), RPS: k[1] * peak})
	}
	return p
}

// Double11PeakRatioDefault is how many times the calm baseline the midnight
// peak is (the brief: 10 to 20 times).
const Double11PeakRatioDefault = 15

// Double11 is the Singles' Day shape over d: a calm baseline drifting up
// towards midnight (the first 40 %), a jump to peak in 1 % of the run, the
// peak held (to 60 %), then a decay that settles at twice the baseline. The
// baseline is peak/ratio (ratio 10..20; 0 = Double11PeakRatioDefault).
func Double11(d time.Duration, peak, ratio float64) Profile {
	if ratio == 0 {
		ratio = Double11PeakRatioDefault
	}
	b := 1 / ratio
	return shape("double11", d, peak, [][2]float64{
		{0, b}, {0.30, b}, {0.40, 1.3 * b}, // evening: calm, people waiting for midnight
		{0.41, 1}, {0.60, 1}, // midnight: everyone at once, held
		{0.64, 0.6}, {0.70, 0.35}, {0.80, 0.15}, {1, 2 * b}, // the decay
	})
}

// Constant is peak for all of d.
func Constant(d time.Duration, peak float64) Profile {
	return shape("constant", d, peak, [][2]float64{{0, 1}, {1, 1}})
}

// Ramp climbs in a straight line from peak/10 to peak over d: where does
// the system start shedding?
func Ramp(d time.Duration, peak float64) Profile {
	return shape("ramp", d, peak, [][2]float64{{0, 0.1}, {1, 1}})
}

// BuiltinProfile returns a built-in profile by name: double11, constant or
// ramp.
func BuiltinProfile(name string, d time.Duration, peak float64) (Profile, error) {
	var p Profile
	switch name {
	case "double11":
		p = Double11(d, peak, 0)
	case "constant":
		p = Constant(d, peak)
	case "ramp":
		p = Ramp(d, peak)
	default:
		return Profile{}, fmt.Errorf("%w: unknown profile %q: want double11, constant, ramp or a .json/.csv file", ErrProfile, name)
	}
	return p, p.Validate()
}

// profileFileBytesMax bounds what ReadProfile reads.
const profileFileBytesMax = 4 << 20

// ReadProfile reads a profile from a file of time -> rate knots, absolute
// (not scaled by the command's duration or peak):
//
//	JSON: [{"seconds": 0, "rps": 50}, {"seconds": 60, "rps": 800}, ...]
//	      or {"name": "...", "points": [...same...]}
//	CSV:  seconds,rps lines (a header line is allowed)
func ReadProfile(path string) (Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return Profile{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, profileFileBytesMax+1))
	if err != nil {
		return Profile{}, fmt.Errorf("read profile: %w", err)
	}
	if len(data) > profileFileBytesMax {
		return Profile{}, fmt.Errorf("%w: %s larger than %d bytes", ErrProfile, path, profileFileBytesMax)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	var p Profile
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		p, err = parseProfileCSV(name, string(data))
	} else {
		p, err = parseProfileJSON(name, data)
	}
	if err != nil {
		return Profile{}, err
	}
	return p, p.Validate()
}

type filePoint struct {
	Seconds *float64 `json:"seconds"`
	RPS     *float64 `json:"rps"`
}

func parseProfileJSON(name string, data []byte) (Profile, error) {
	var pts []filePoint
	if err := json.Unmarshal(data, &pts); err != nil {
		var obj struct {
			Name   string      `json:"name"`
			Points []filePoint `json:"points"`
		}
		if err2 := json.Unmarshal(data, &obj); err2 != nil {
			return Profile{}, fmt.Errorf("%w: %s: want a JSON array of {seconds, rps} or {name, points}: %v", ErrProfile, name, err)
		}
		pts = obj.Points
		if obj.Name != "" {
			name = obj.Name
		}
	}
	p := Profile{Name: name}
	for i, fp := range pts {
		if fp.Seconds == nil || fp.RPS == nil {
			return Profile{}, fmt.Errorf("%w: %s point %d: want both seconds and rps", ErrProfile, name, i)
		}
		pt, err := point(*fp.Seconds, *fp.RPS)
		if err != nil {
			return Profile{}, fmt.Errorf("%w: %s point %d: %v", ErrProfile, name, i, err)
		}
		p.Points = append(p.Points, pt)
	}
	return p, nil
}

func parseProfileCSV(name, data string) (Profile, error) {
	r := csv.NewReader(strings.NewReader(data))
	r.FieldsPerRecord = 2
	r.TrimLeadingSpace = true
	r.Comment = '#'
	recs, err := r.ReadAll()
	if err != nil {
		return Profile{}, fmt.Errorf("%w: %s: %v", ErrProfile, name, err)
	}
	p := Profile{Name: name}
	for i, rec := range recs {
		s, err1 := strconv.ParseFloat(rec[0], 64)
		v, err2 := strconv.ParseFloat(rec[1], 64)
		if err1 != nil || err2 != nil {
			if i == 0 {
				continue // header
			}
			return Profile{}, fmt.Errorf("%w: %s line %d: want seconds,rps: %q", ErrProfile, name, i+1, rec)
		}
		pt, err := point(s, v)
		if err != nil {
			return Profile{}, fmt.Errorf("%w: %s line %d: %v", ErrProfile, name, i+1, err)
		}
		p.Points = append(p.Points, pt)
	}
	return p, nil
}

func point(seconds, rps float64) (Point, error) {
	if math.IsNaN(seconds) || seconds < 0 || seconds > ProfileLengthMax.Seconds() {
		return Point{}, fmt.Errorf("seconds %v out of range", seconds)
	}
	return Point{At: time.Duration(seconds * float64(time.Second)), RPS: rps}, nil
}
