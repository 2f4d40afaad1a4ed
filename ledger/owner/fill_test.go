package owner

import "testing"

func TestFillWhileCommitting(t *testing.T) {
	for _, c := range []struct {
		mode              string
		shards, databases int
		want              bool
		err               bool
	}{
		{"auto", 64, 4, true, false},
		{"auto", 8, 3, true, false},
		{"auto", 1, 1, false, false},
		{"auto", 3, 3, false, false},
		{"", 64, 1, true, false},
		{"on", 1, 1, true, false},
		{"off", 64, 1, false, false},
		{"maybe", 64, 1, false, true},
	} {
		got, err := fillWhileCommitting(c.mode, c.shards, c.databases)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%q %d/%d: %v %v, want %v (error %v)", c.mode, c.shards, c.databases, got, err, c.want, c.err)
		}
	}
}
