package meminfo

import "testing"

func TestParseAvailable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20971520 kB\n", 20 << 30, true},
		{"MemAvailable:\t1 kB", 1024, true},
		{"MemAvailable: 7", 7 << 10, true},
		{"MemTotal: 5 kB\n", 0, false},
		{"MemAvailable: x kB\n", 0, false},
		{"MemAvailable: 5 MB\n", 0, false},
		{"MemAvailable: -5 kB\n", 0, false},
	} {
		got, err := parseAvailable(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseAvailable(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if n, ok := Available(); !ok || n <= 0 {
		t.Errorf("Available() = %d, %v on this Linux machine", n, ok)
	}
}
