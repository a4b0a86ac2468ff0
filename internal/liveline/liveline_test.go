package liveline

import (
	"bytes"
	"strings"
	"testing"
)

// TestPlainLines: off a terminal, plain lines without carriage returns or escape codes,
// at most one per PlainEvery however often Show is called; the count is in the text.
func TestPlainLines(t *testing.T) {
	var b bytes.Buffer
	l := New(&b)
	for i := 0; i < 500; i++ {
		l.Show("eval m", i, 500, "completions", " · 10 tok/s")
	}
	l.Clear()
	out := b.String()
	if strings.ContainsAny(out, "\r\x1b\b") {
		t.Errorf("control characters in plain lines: %q", out)
	}
	if out != "eval m 0/500 completions · 10 tok/s\n" {
		t.Errorf("got %q: want only the first call's line within %s", out, PlainEvery)
	}
	var nothing *Line // no writer: every call is a no-op
	if New(nil) != nil {
		t.Error("New(nil) is not nil")
	}
	nothing.Show("x", 1, 2, "y", "")
	nothing.Clear()
}
