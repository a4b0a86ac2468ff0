package host

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"
)

// tail keeps the last lines written to it (a plugin's stderr, or its log lines).
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part = append(t.part, b...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.add(string(t.part[:i]))
		t.part = t.part[i+1:]
	}
	if len(t.part) > 4096 { // an endless line: keep its start
		t.add(string(t.part))
		t.part = t.part[:0]
	}
	return len(b), nil
}

func (t *tail) add(line string) {
	line = strings.TrimRight(line, "\r")
	if strings.TrimSpace(line) == "" {
		return
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// last returns up to n of the last lines, oldest first.
func (t *tail) last(n int) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ls := t.lines
	if len(t.part) > 0 {
		ls = append(append([]string(nil), ls...), string(t.part))
	}
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return append([]string(nil), ls...)
}

func (t *tail) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines, t.part = nil, nil
}

// logSink receives go-plugin's log lines for one plugin: it keeps the lines about the
// process exiting (the host reports those in its own error) and passes the rest on.
type logSink struct {
	out   io.Writer
	exits *tail
}

// quiet are go-plugin's log messages that the host's own errors already cover.
var quiet = []string{"plugin process exited", "plugin failed to exit gracefully", "stdio service"}

func (s *logSink) Write(b []byte) (int, error) {
	line := string(b)
	for _, q := range quiet {
		if strings.Contains(line, q) {
			return s.exits.Write(b)
		}
	}
	if s.out == nil {
		return len(b), nil
	}
	return s.out.Write(b)
}

var exitErrRE = regexp.MustCompile(`plugin process exited:.*error="?([^"\n]+)"?`)

// exitStatus returns how the plugin's process last exited ("exit status 3",
// "signal: killed"), or "" when unknown or clean.
func (s *logSink) exitStatus() string {
	ls := s.exits.last(4)
	for i := len(ls) - 1; i >= 0; i-- {
		if m := exitErrRE.FindStringSubmatch(ls[i]); m != nil {
			return strings.TrimSpace(m[1])
		}
	}
	return ""
}
