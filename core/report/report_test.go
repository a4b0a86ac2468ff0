package report

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// writeRun writes a run directory with the given metrics and completions lines.
func writeRun(t *testing.T, dir string, metrics, completions string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(metrics), 0o644); err != nil {
		t.Fatal(err)
	}
	if completions != "" {
		if err := os.WriteFile(filepath.Join(dir, CompletionsFile), []byte(completions), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLayoutPlacesEveryKeyOnce(t *testing.T) {
	r := &Run{Name: "a", Steps: []map[string]float64{{
		"step": 1, "epoch": 0, "reward/acc/mean": 0.5, "reward/acc/std": 0.1, "reward/acc/applicable": 1,
		"time/sample": 2, "time/learn": 3, "kl": 0.01, "brand_new/metric": 7, "completion_length/mean": 10, "completion_length/max": 20,
	}}}
	secs := layout([]*Run{r})
	where := map[string]string{}
	for _, s := range secs {
		for _, c := range s.charts {
			for _, k := range c.keys {
				if prev, ok := where[k]; ok {
					t.Errorf("%s drawn twice: in %s and %s", k, prev, c.title)
				}
				where[k] = s.title + "/" + c.title
			}
			for _, b := range c.band {
				where[b] = s.title + "/" + c.title
			}
		}
	}
	for k := range r.Steps[0] {
		if axisKeys[k] {
			if _, ok := where[k]; ok {
				t.Errorf("axis key %s is charted", k)
			}
			continue
		}
		if _, ok := where[k]; !ok {
			t.Errorf("%s is in no chart", k)
		}
	}
	for k, want := range map[string]string{
		"brand_new/metric":      "Other/brand_new/metric",
		"reward/acc/std":        "Rewards/reward/acc (mean ± std)",
		"time/learn":            "Speed/" + merged["time"],
		"time/sample":           "Speed/" + merged["time"],
		"completion_length/max": "Completions/" + merged["completion_length"],
	} {
		if where[k] != want {
			t.Errorf("%s: in %q, want %q", k, where[k], want)
		}
	}
}

func TestRenderOverlaysRunsAndEscapes(t *testing.T) {
	dir := t.TempDir()
	m := `{"step":1,"loss":0.5,"reward/x/mean":1,"reward/x/std":0.2}
{"step":2,"loss":0.25,"reward/x/mean":2,"reward/x/std":0.1}
`
	hostile := "<script>alert(1)</script> & \xff bytes"
	c := `{"step":1,"group":0,"prompt":"p","completion":"` + strings.ReplaceAll(hostile, "\xff", `\ufffd`) + `","tokens":3,"finish_reason":"eos","scores":{"x":1,"y":null},"advantage":0.7,"self_certainty":1.5}
{"step":2,"group":0,"prompt":"p","completion":"second","tokens":1,"finish_reason":"length","scores":{"x":2,"y":0.5},"advantage":-0.7,"self_certainty":1.1}
`
	writeRun(t, filepath.Join(dir, "a"), m, c)
	writeRun(t, filepath.Join(dir, "b"), m+`{"step":3,"loss":0.1}`+"\n"+`{"step":4,"loss":`, "")
	var runs []*Run
	for _, d := range []string{"a", "b"} {
		r, err := Load(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if n := len(runs[1].Steps); n != 3 {
		t.Errorf("run b: %d steps, want 3 (the unfinished last line skipped)", n)
	}
	out := filepath.Join(dir, "report.html")
	if err := Write(out, runs, Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	b, _ := os.ReadFile(out)
	page := string(b)
	if strings.Contains(page, "<script>alert") {
		t.Error("a completion's markup reached the page unescaped")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt; &amp; \ufffd bytes") {
		t.Error("the completion's text is not on the page")
	}
	for _, bad := range []string{"http://", "https://"} {
		for _, line := range strings.Split(page, "\n") {
			if strings.Contains(line, bad) && !strings.Contains(line, "http://www.w3.org/2000/svg") {
				t.Errorf("page refers to the network: %q", line)
			}
		}
	}
	// Every chart is well-formed SVG with one polyline per run (both runs have loss).
	svgs := 0
	for rest := page; ; {
		i := strings.Index(rest, `<svg class="chart"`)
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		doc := rest[i : i+j+len("</svg>")]
		rest = rest[i+j:]
		svgs++
		if err := xml.Unmarshal([]byte(doc), new(struct{})); err != nil {
			t.Errorf("chart %d is not well-formed: %v", svgs, err)
		}
		if strings.Contains(doc, `aria-label="loss"`) {
			if n := strings.Count(doc, "<polyline"); n != 2 {
				t.Errorf("loss chart: %d lines, want 2 (one per run)", n)
			}
		}
	}
	if svgs != 2 {
		t.Errorf("%d charts, want 2 (loss; reward x with its band)", svgs)
	}
	if n := strings.Count(page, `<tr data-step=`); n != 2 {
		t.Errorf("%d completion rows, want 2", n)
	}
	if !strings.Contains(page, `text-anchor="middle">2</text>`) || strings.Contains(page, `text-anchor="middle">2.0</text>`) {
		t.Error("step 2 is not labelled as the integer it is on the x axis")
	}
	if !bytes.Contains(b, []byte(`<option value="2">2</option>`)) {
		t.Error("no step filter for step 2")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, filepath.Join(dir, "bad"), "{\"step\":1}\nnot json\n", "")
	writeRun(t, filepath.Join(dir, "nostep"), "{\"loss\":1}\n", "")
	if err := os.MkdirAll(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{"missing", "no such file"},
		{"empty", "metrics.jsonl not found: give a run directory written by rlif train"},
		{"bad", "metrics.jsonl line 2: not a JSON object"},
		{"nostep", `line 1: no numeric "step"`},
	} {
		_, err := Load(filepath.Join(dir, tc.dir))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%s) = %v, want an error with %q", tc.dir, err, tc.want)
		}
	}
}

func TestCompletionsCapKeepsWholeSteps(t *testing.T) {
	var c strings.Builder
	for s := 1; s <= 50; s++ {
		for g := 0; g < 4; g++ {
			c.WriteString(`{"step":` + itoa(s) + `,"group":0,"completion":"x","scores":{}}` + "\n")
		}
	}
	dir := t.TempDir()
	writeRun(t, dir, `{"step":1}`+"\n", c.String())
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var p page
	p.completions([]*Run{r}, 40)
	if p.Shown > 40 || p.Shown%4 != 0 || p.Shown == 0 {
		t.Errorf("%d rows shown: want whole steps of 4, at most 40", p.Shown)
	}
	if p.Steps[len(p.Steps)-1] != 50 || p.Steps[0] != 1 {
		t.Errorf("steps kept %v: want the first and the last", p.Steps)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestTicksCoverRange(t *testing.T) {
	for _, tc := range [][2]float64{{0, 1}, {-0.6, 0.6}, {13, 16}, {0.89390, 0.89431}, {1, 4}, {1e-7, 3e-6}, {-5, 1234}} {
		ts := ticks(tc[0], tc[1], 5)
		if ts[0] > tc[0] || ts[len(ts)-1] < tc[1] {
			t.Errorf("ticks(%v) = %v do not cover the range", tc, ts)
		}
		if len(ts) > 12 {
			t.Errorf("ticks(%v): %d ticks", tc, len(ts))
		}
		seen := map[string]bool{}
		for _, v := range ts {
			l := tickLabel(v, ts[1]-ts[0])
			if seen[l] {
				t.Errorf("ticks(%v) = %v: label %q twice", tc, ts, l)
			}
			seen[l] = true
		}
	}
}
