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
