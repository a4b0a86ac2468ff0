package report

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// Options tune what the page holds.
type Options struct {
	// MaxCompletions caps the rows of the completions table over all runs (0: the
	// default, DefaultMaxCompletions; < 0: no cap). Whole steps are kept, evenly spread
	// over the run and always with its last step, so the page stays small enough to
	// open for long runs.
	MaxCompletions int
	// Now stamps the page; zero means time.Now.
	Now time.Time
}

// DefaultMaxCompletions is the default cap on completion rows.
const DefaultMaxCompletions = 2000

// Write renders the runs into path through a temporary file renamed into place (mode
// 0644), so a browser reloading the page never sees half of it.
func Write(path string, runs []*Run, opt Options) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("report %s: directory %s does not exist", path, dir)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary file's name means nothing to the reader
		}
		return fmt.Errorf("report %s: cannot write in %s: %w", path, dir, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = Render(f, runs, opt); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}

type pageChart struct {
	ID, Title string
	SVG       template.HTML
	Legend    template.HTML
}

type pageSection struct {
	Title  string
	Charts []pageChart
}

type pageRun struct {
	Name, Dir, Color, Config string
	Steps                    int
	LastStep                 int
}

type pageEval struct {
	Run, Dir, Label, Data  string
	Items, Completions     int
	Accuracy, Low, High    string
	PassMaj, Calibration   string
	Extractable, Truncated string
	Histogram              template.URL
}

type pageRow struct {
	Run, Color          string
	Step, Group, Tokens int
	Prompt, Completion  string
	Finish              string
	Scores              []string
	Advantage, SelfCert string
}

type page struct {
	Title     string
	Generated string
	Runs      []pageRun
	Sections  []pageSection
	Evals     []pageEval
	Rewards   []string
	Rows      []pageRow
	Steps     []int
	Shown     int
	Total     int
	// ChartStyle is chartStyle, typed so that the template keeps it as CSS.
	ChartStyle template.CSS
}

// Render writes the HTML page of runs to w.
func Render(w io.Writer, runs []*Run, opt Options) error {
	if len(runs) == 0 {
		return fmt.Errorf("no runs to report")
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	p := page{Generated: opt.Now.UTC().Format("2006-01-02 15:04:05 UTC"), ChartStyle: template.CSS(chartStyle)}
	for i, r := range runs {
		if i > 0 {
			p.Title += ", "
		}
		p.Title += r.Name
		pr := pageRun{Name: r.Name, Dir: r.Dir, Color: palette[i%len(palette)], Config: r.Config, Steps: len(r.Steps)}
		if n := len(r.Steps); n > 0 {
			pr.LastStep = int(r.Steps[n-1]["step"])
		}
		p.Runs = append(p.Runs, pr)
	}
	for _, s := range layout(runs) {
		ps := pageSection{Title: s.title}
		for _, c := range s.charts {
			ps.Charts = append(ps.Charts, pageChart{ID: c.id, Title: c.title, SVG: template.HTML(c.svg(runs)), Legend: template.HTML(c.legend(runs))})
		}
		p.Sections = append(p.Sections, ps)
	}
	for _, r := range runs {
		for _, e := range r.Evals {
			p.Evals = append(p.Evals, evalRow(r, e))
		}
	}
	p.completions(runs, opt.MaxCompletions)
	return tmpl.Execute(w, p)
}

func evalRow(r *Run, e Eval) pageEval {
	s := e.Summary
	pct := func(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" }
	pe := pageEval{
		Run: r.Name, Dir: e.Dir, Label: s.Label, Data: s.DataName, Items: s.Items, Completions: s.Completions,
		Accuracy: pct(s.Accuracy), Low: pct(s.AccuracyLow), High: pct(s.AccuracyHigh),
		Extractable: pct(s.Extractable), Truncated: pct(s.Truncated),
	}
	var ks []int
	for k := range s.PassAtK {
		if n, err := strconv.Atoi(k); err == nil {
			ks = append(ks, n)
		}
	}
	sort.Ints(ks)
	for _, k := range ks {
		pe.PassMaj += fmt.Sprintf("pass@%d %s ", k, pct(s.PassAtK[strconv.Itoa(k)]))
	}
	if s.MajAtK != nil {
		pe.PassMaj += fmt.Sprintf("maj@%d %s", s.N, pct(*s.MajAtK))
	}
	if t := s.Calibration.Test; t != nil {
		pe.Calibration = fmt.Sprintf("r = %.3f, p = %.3g, AUC = %.3f", t.R, t.P, t.AUC)
	} else {
		pe.Calibration = "no test (one class is empty)"
	}
	if len(e.Histogram) > 0 {
		pe.Histogram = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.Histogram))
	}
	return pe
}

// completions fills the table rows, keeping whole steps within the cap.
func (p *page) completions(runs []*Run, limit int) {
	if limit == 0 {
		limit = DefaultMaxCompletions
	}
	names := map[string]bool{}
	type stepKey struct{ run, step int }
	count := map[stepKey]int{}
	var order []stepKey
	for ri, r := range runs {
		for _, c := range r.Completions {
			k := stepKey{ri, c.Step}
			if count[k] == 0 {
				order = append(order, k)
			}
			count[k]++
			p.Total++
			for n := range c.Scores {
				names[n] = true
			}
		}
	}
	for n := range names {
		p.Rewards = append(p.Rewards, n)
	}
	sort.Strings(p.Rewards)
	keep := map[stepKey]bool{}
	if limit < 0 || p.Total <= limit {
		for _, k := range order {
			keep[k] = true
		}
	} else {
		// Every run gets its share; within it the last step first, then evenly spread ones.
		share := limit / len(runs)
		for ri := range runs {
			var mine []stepKey
			for _, k := range order {
				if k.run == ri {
					mine = append(mine, k)
				}
			}
			if len(mine) == 0 {
				continue
			}
			used := 0
			take := func(k stepKey) {
				if !keep[k] && used+count[k] <= share {
					keep[k] = true
					used += count[k]
				}
			}
			take(mine[len(mine)-1])
			per := max(1, count[mine[0]])
			n := max(1, share/per)
			for i := 0; i < n && i < len(mine); i++ {
				take(mine[i*(len(mine)-1)/max(1, n-1)])
			}
		}
	}
	steps := map[int]bool{}
	for ri, r := range runs {
		for _, c := range r.Completions {
			if !keep[stepKey{ri, c.Step}] {
				continue
			}
			row := pageRow{
				Run: r.Name, Color: palette[ri%len(palette)], Step: c.Step, Group: c.Group, Tokens: c.Tokens,
				Prompt: c.Prompt, Completion: c.Completion, Finish: c.FinishReason,
				Advantage: strconv.FormatFloat(c.Advantage, 'f', 3, 64), SelfCert: strconv.FormatFloat(c.SelfCert, 'f', 3, 64),
			}
			for _, n := range p.Rewards {
				if v := c.Scores[n]; v != nil {
					row.Scores = append(row.Scores, strconv.FormatFloat(*v, 'g', 4, 64))
				} else {
					row.Scores = append(row.Scores, "–")
				}
			}
			p.Rows = append(p.Rows, row)
			steps[c.Step] = true
		}
	}
	for s := range steps {
		p.Steps = append(p.Steps, s)
	}
	sort.Ints(p.Steps)
	p.Shown = len(p.Rows)
}
