package report

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Standalone charts are well-formed SVG with one polyline per run, a legend naming each
// run, and their own style; an unknown key is an error that names it.
func TestWriteCharts(t *testing.T) {
	dir := t.TempDir()
	m := `{"step":0,"eval/accuracy":0.1}
{"step":1,"loss":0.5,"time/sample":3,"time/learn":5}
{"step":2,"loss":0.25,"eval/accuracy":0.3,"time/sample":2,"time/learn":4,"zz/last":1}
`
	writeRun(t, filepath.Join(dir, "grpo"), m, "")
	writeRun(t, filepath.Join(dir, "intuitor <x>"), m, "")
	var runs []*Run
	for _, d := range []string{"grpo", "intuitor <x>"} {
		r, err := Load(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	out := filepath.Join(dir, "charts")
	paths, err := WriteCharts(out, runs, []string{"eval/accuracy", "time"})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != "time.svg" && filepath.Base(paths[1]) != "time.svg" {
		// Two keys asked for, and the runs have four charts: only those two are drawn.
		t.Fatalf("wrote %v, want eval_accuracy.svg and time.svg", paths)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		series, legend := 0, []string{}
		d := xml.NewDecoder(strings.NewReader(string(b)))
		inLegend := false
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s is not well-formed XML: %v", p, err)
			}
			switch e := tok.(type) {
			case xml.StartElement:
				inLegend = false
				for _, a := range e.Attr {
					if a.Name.Local == "class" && a.Value == "series" {
						series++
					}
					if a.Name.Local == "class" && a.Value == "legend" {
						inLegend = true
					}
				}
			case xml.EndElement:
				inLegend = false
			case xml.CharData:
				if inLegend {
					legend = append(legend, string(e))
				}
			}
		}
		wantSeries := 2
		if strings.HasSuffix(p, "time.svg") {
			wantSeries = 4 // two phases for each run
		}
		if series != wantSeries || len(legend) != wantSeries {
			t.Errorf("%s: %d series and legend %q, want %d of each", p, series, legend, wantSeries)
		}
		if !strings.Contains(strings.Join(legend, "|"), "intuitor <x>") {
			t.Errorf("%s: legend %q does not name the run", p, legend)
		}
		if !strings.Contains(string(b), "<style>") {
			t.Errorf("%s carries no style", p)
		}
	}
	if _, err := WriteCharts(out, runs, []string{"eval/acuracy"}); err == nil || !strings.Contains(err.Error(), "eval/acuracy") {
		t.Errorf("unknown key: err %v, want one naming eval/acuracy", err)
	}
}
