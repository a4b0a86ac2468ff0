package main

import (
	"bytes"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

func TestReportBadInput(t *testing.T) {
	dir := t.TempDir()
	notRun := filepath.Join(dir, "empty")
	os.MkdirAll(notRun, 0o755)
	okRun := filepath.Join(dir, "ok")
	os.MkdirAll(okRun, 0o755)
	os.WriteFile(filepath.Join(okRun, "metrics.jsonl"), []byte(`{"step":1,"loss":0.5}`+"\n"), 0o644)
	file := filepath.Join(dir, "file.txt")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "give at least one run directory"},
		{[]string{filepath.Join(dir, "nope")}, 1, "nope: stat"},
		{[]string{notRun}, 1, "metrics.jsonl not found: give a run directory written by rlif train"},
		{[]string{file}, 1, "is not a directory"},
		{[]string{notRun, "--max-completions", "0"}, 2, "--max-completions must be > 0 or -1"},
		{[]string{okRun, "--out", filepath.Join(dir, "no", "r.html")}, 1, "directory " + filepath.Join(dir, "no") + " does not exist"},
	} {
		code, _, errs := runCLI(t, append([]string{"report"}, tc.args...)...)
		line := strings.TrimSpace(errs)
		if code != tc.code || strings.Contains(line, "\n") || !strings.Contains(line, tc.want) {
			t.Errorf("report %v: exit %d, stderr %q; want exit %d and one line with %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(notRun, "report.html")); err == nil {
		t.Error("a failed report left a file behind")
	}
}

// A run killed while writing metrics.jsonl leaves its last line cut short: the report is
// still written, from the complete lines, and a one-line note on stderr says which line
// was left out.
func TestReportNotesCutLine(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	metrics := filepath.Join(run, "metrics.jsonl")
	if err := os.WriteFile(metrics, []byte(`{"step":1,"loss":0.5}`+"\n"+`{"step":2,"loss":0.4}`+"\n"+`{"step":3,"lo`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "report", run)
	want := "note: " + metrics + " line 3 is cut short"
	if code != 0 || !strings.Contains(out, "wrote") || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, want) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0, the report written and one line starting %q", code, out, errs, want)
	}
	b, err := os.ReadFile(filepath.Join(run, "report.html"))
	if err != nil || !bytes.Contains(b, []byte("0.4")) {
		t.Fatalf("report %d bytes, %v; want the complete steps' values in it", len(b), err)
	}

	// A run that has not finished a step: a report without curves, and a note saying why.
	if err := os.WriteFile(metrics, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "report", run)
	want = "note: " + metrics + " holds no step yet"
	if code != 0 || !strings.Contains(out, "wrote") || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, want) {
		t.Fatalf("empty metrics: exit %d, stdout %q, stderr %q; want exit 0 and one line starting %q", code, out, errs, want)
	}
}

// TestReportInBrowser looks at the report as a person would: a real two-step run on the
// stories model, its report.html opened by headless Chromium, which must run the page's
// script without a console message and draw every chart (a DOM with non-empty lines and
// a screenshot with the runs' colours in it). RLIF_SCREENSHOT=path keeps the screenshot.
func TestReportInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testutil.SkipUnlessCI(t, "chromium is not installed (make apt installs it): %v", err)
	}
	dir := t.TempDir()
	rlif, _ := buildRlif(t, dir)
	run := filepath.Join(dir, "run")
	cfg := filepath.Join(dir, "run.toml")
	os.WriteFile(cfg, []byte(`model = "`+testutil.StoriesModel(t)+`"
out = "`+run+`"
steps = 3
seed = 3
[data]
raw = true
builtin_size = 8
[sampling]
prompts_per_step = 2
group_size = 3
max_tokens = 16
temperature = 1.0
threads = 1
[learner]
threads = 1
lr = 1e-3
[sync]
precision = "f32"
[[rewards]]
name = "self_certainty"
[[rewards]]
name = "format"
weight = 0.5
[output]
checkpoint_every = 1
completions_every = 1
`), 0o644)
	if b, err := exec.Command(rlif, "train", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, b)
	}
	page := filepath.Join(dir, "report.html")
	if b, err := exec.Command(rlif, "report", run, "--out", page).CombinedOutput(); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}

	browse := func(args ...string) (stdout, stderr string) {
		cmd := exec.Command(chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--enable-logging=stderr", "--v=0", "--user-data-dir=" + filepath.Join(dir, "profile")}, args...)...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, e.String())
		}
		return o.String(), e.String()
	}
	dom, log := browse("--dump-dom", "file://"+page)
	if strings.Contains(log, ":CONSOLE") {
		t.Errorf("console messages:\n%s", grepLines(log, ":CONSOLE"))
	}
	charts := strings.Count(dom, `<svg class="chart"`)
	if charts < 15 {
		t.Errorf("%d charts in the DOM, want one per metric (at least 15)", charts)
	}
	lines := regexp.MustCompile(`<polyline class="series"[^>]* points="([^"]*)"`).FindAllStringSubmatch(dom, -1)
	if len(lines) < charts {
		t.Errorf("%d lines in %d charts", len(lines), charts)
	}
	for _, l := range lines {
		if n := len(strings.Fields(l[1])); n != 3 {
			t.Errorf("a line with %d points, want 3 (one per step): %.80s", n, l[0])
		}
	}
	// The script ran: it counted the completion rows (3 steps × 2 prompts × 3).
	m := regexp.MustCompile(`<span id="row-count">(\d+) shown</span>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the table's script did not run: no row count in the DOM")
	}
	if n, _ := strconv.Atoi(m[1]); n != 18 {
		t.Errorf("%d completion rows shown, want 18", n)
	}

	shot := filepath.Join(dir, "report.png")
	if p := os.Getenv("RLIF_SCREENSHOT"); p != "" {
		shot, _ = filepath.Abs(p)
	}
	browse("--window-size=1400,1800", "--screenshot="+shot, "file://"+page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The first run's colour (#1f77b4) is in the screenshot: lines were painted.
	blue := 0
	bo := img.Bounds()
	for y := bo.Min.Y; y < bo.Max.Y; y++ {
		for x := bo.Min.X; x < bo.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 < 0x40 && g>>8 > 0x60 && g>>8 < 0x90 && b>>8 > 0xa0 && b>>8 < 0xc8 {
				blue++
			}
		}
	}
	if blue < 500 {
		t.Errorf("%d pixels in the run's colour in the screenshot: the charts were not drawn", blue)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
