package meminfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

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

func TestParsePeak(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"Name:\trlif\nVmPeak:\t 9 kB\nVmHWM:\t  525432 kB\nVmRSS: 1 kB\n", 525432 << 10, true},
		{"VmHWM: 7", 7 << 10, true},
		{"VmRSS: 1 kB\n", 0, false},
		{"VmHWM: x kB\n", 0, false},
		{"VmHWM: -1 kB\n", 0, false},
	} {
		got, err := statusField(tc.in, "VmHWM")
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("statusField(%q, VmHWM) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// A phase's peak: after ResetPeak, PeakRSS no longer counts memory touched and freed
// before it.
func TestResetPeak(t *testing.T) {
	big := make([]byte, 256<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	before, err := PeakRSS()
	if err != nil {
		t.Skipf("no /proc/self/status here: %v", err)
	}
	if before < 256<<20 {
		t.Fatalf("peak %d after touching 256 MiB", before)
	}
	big = nil
	runtime.GC()
	debug.FreeOSMemory()
	if !ResetPeak() {
		t.Skip("this kernel refuses /proc/self/clear_refs")
	}
	after, err := PeakRSS()
	if err != nil || after >= before {
		t.Errorf("peak after reset %d (%v), before %d: want less", after, err, before)
	}
}
