// Package meminfo reads how much memory the system can give a process: the one place
// where /proc/meminfo is parsed (the sampler sizes its KV cache by it, the learner
// decides activation recompute by it).
package meminfo

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Available returns MemAvailable of /proc/meminfo in bytes: the memory the kernel can
// give without swapping. ok is false where that is unknown (not Linux, or the file reads
// otherwise).
func Available() (bytes int64, ok bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	n, err := parseAvailable(string(b))
	return n, err == nil
}

func parseAvailable(meminfo string) (int64, error) {
	for _, line := range strings.Split(meminfo, "\n") {
		rest, ok := strings.CutPrefix(line, "MemAvailable:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 || (len(f) == 2 && f[1] != "kB") {
			return 0, fmt.Errorf("MemAvailable line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("MemAvailable line %q", line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no MemAvailable line")
}

// PeakRSS returns this process's resident-set high-water mark in bytes (VmHWM of
// /proc/self/status): since the process started, or since the last ResetPeak.
func PeakRSS() (int64, error) { return ownStatus("VmHWM") }

// RSS returns this process's resident set in bytes (VmRSS of /proc/self/status).
func RSS() (int64, error) { return ownStatus("VmRSS") }

func ownStatus(name string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	return statusField(string(b), name)
}

// statusField reads a "Name: N kB" line of /proc/self/status, in bytes.
func statusField(status, name string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil || kb < 0 {
				return 0, fmt.Errorf("memory: %s %q", name, strings.TrimSpace(v))
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("memory: no %s in /proc/self/status", name)
}

// ResetPeak starts PeakRSS anew from the present resident set (writing 5 to
// /proc/self/clear_refs), so that a phase's own peak can be read; ok is false where the
// kernel does not allow it, and PeakRSS then keeps the process's peak.
func ResetPeak() (ok bool) {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}
