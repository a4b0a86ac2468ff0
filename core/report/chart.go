package report

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/rlif/rlif/internal/num"
)

// section is a heading of the report and the metric prefixes (the part of a key before
// its first '/') it gathers. Keys whose prefix no section names land in "Other", so a
// metric added to metrics.jsonl shows up without a change here.
type section struct {
	title    string
	prefixes []string
}

var sections = []section{
	{"Rewards", []string{"reward"}},
	{"Intrinsic signals", []string{"self_certainty", "entropy", "advantage"}},
	{"Label-free health", []string{"health"}},
	{"Completions", []string{"completion_length", "completion", "tokens"}},
	{"Optimization", []string{"loss", "kl", "clip_ratio", "grad_norm", "lr", "ratio", "is_weight"}},
	{"Speed", []string{"time", "tokens_per_second"}},
}

// merged are the prefixes whose keys share one chart (the phases of a step, the mean and
// the longest completion): they are read against each other.
var merged = map[string]string{
	"time":              "time per phase (s)",
	"completion_length": "completion length (tokens)",
	"health":            "health: sampled entropy and length over their start; healthy, collapsed (1/0)",
}

// axisKeys are not plotted: they are the x axis and its companion.
var axisKeys = map[string]bool{"step": true, "epoch": true}

// chart is one plot: its keys are drawn for every run. A key with a band draws its
// mean ± the band key (a reward's std) as a shaded area.
type chart struct {
	id, title string
	keys      []string
	band      map[string]string
}

type chartSection struct {
	title  string
	charts []chart
}

func prefixOf(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return key
}

// layout groups every metric key present in the runs into sections of charts.
func layout(runs []*Run) []chartSection {
	present := map[string]bool{}
	for _, r := range runs {
		for _, m := range r.Steps {
			for k := range m {
				if !axisKeys[k] {
					present[k] = true
				}
			}
		}
	}
	keys := make([]string, 0, len(present))
	for k := range present {
		keys = append(keys, k)
	}
	// A reward's mean comes before its applicable fraction: it is what one looks for.
	rank := func(k string) string {
		if base, ok := strings.CutSuffix(k, "/applicable"); ok {
			return base + "/~applicable"
		}
		return k
	}
	sort.Slice(keys, func(i, j int) bool { return rank(keys[i]) < rank(keys[j]) })

	sectionOf := map[string]int{}
	for i, s := range sections {
		for _, p := range s.prefixes {
			sectionOf[p] = i
		}
	}
	out := make([]chartSection, len(sections)+1)
	for i, s := range sections {
		out[i].title = s.title
	}
	out[len(sections)].title = "Other"

	used := map[string]bool{}
	mergedAt := map[string]int{} // prefix -> index of its chart in its section
	for _, k := range keys {
		if used[k] {
			continue
		}
		p := prefixOf(k)
		si, ok := sectionOf[p]
		if !ok {
			si = len(sections)
		}
		sec := &out[si]
		if title, ok := merged[p]; ok {
			if i, ok := mergedAt[p]; ok {
				sec.charts[i].keys = append(sec.charts[i].keys, k)
			} else {
				mergedAt[p] = len(sec.charts)
				sec.charts = append(sec.charts, chart{id: p, title: title, keys: []string{k}})
			}
			used[k] = true
			continue
		}
		c := chart{id: k, title: k, keys: []string{k}}
		if base, ok := strings.CutSuffix(k, "/mean"); ok && present[base+"/std"] {
			c.title = base + " (mean ± std)"
			c.band = map[string]string{k: base + "/std"}
			used[base+"/std"] = true
		}
		used[k] = true
		sec.charts = append(sec.charts, c)
	}
	var kept []chartSection
	for _, s := range out {
		if len(s.charts) > 0 {
			kept = append(kept, s)
		}
	}
	return kept
}

// palette colours the runs (Tableau 10): run i is palette[i % len].
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// dashes tell apart the keys of one chart within a run's colour.
var dashes = []string{"", "6 3", "2 2", "8 3 2 3"}

// Chart geometry, in SVG user units.
const (
	chartW, chartH                  = 520.0, 260.0
	marginL, marginR, marginT, marB = 58.0, 12.0, 10.0, 30.0
	// maxMarkers is the most points per series drawn as markers with a tooltip.
	maxMarkers = 400
)

type point struct{ x, y, band float64 }

func seriesOf(r *Run, key, bandKey string) []point {
	var out []point
	for _, m := range r.Steps {
		y, ok := m[key]
		if !ok || !num.Finite(y) {
			continue
		}
		p := point{x: m["step"], y: y}
		if bandKey != "" {
			p.band = m[bandKey]
		}
		out = append(out, p)
	}
	return out
}

// svg draws chart c for runs: axes with rounded ticks, one polyline per run and key,
// markers with a tooltip, and a shaded band where c has one.
func (c chart) svg(runs []*Run) string {
	type line struct {
		run, key int
		pts      []point
	}
	var lines []line
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for ri, r := range runs {
		for ki, k := range c.keys {
			pts := seriesOf(r, k, c.band[k])
			if len(pts) == 0 {
				continue
			}
			for _, p := range pts {
				xlo, xhi = math.Min(xlo, p.x), math.Max(xhi, p.x)
				ylo, yhi = math.Min(ylo, p.y-p.band), math.Max(yhi, p.y+p.band)
			}
			lines = append(lines, line{ri, ki, pts})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, html.EscapeString(c.title))
	if len(lines) == 0 {
		b.WriteString(`<text x="50%" y="50%" text-anchor="middle">no values</text></svg>`)
		return b.String()
	}
	if xhi-xlo < 1 {
		xlo, xhi = xlo-0.5, xhi+0.5
	}
	if yhi-ylo < 1e-12*math.Max(1, math.Abs(yhi)) {
		d := math.Max(math.Abs(yhi)*0.05, 0.5)
		ylo, yhi = ylo-d, yhi+d
	}
	yt := ticks(ylo, yhi, 5)
	ylo, yhi = math.Min(ylo, yt[0]), math.Max(yhi, yt[len(yt)-1])
	xt := ticks(xlo, xhi, 6)
	pw, ph := chartW-marginL-marginR, chartH-marginT-marB
	sx := func(x float64) float64 { return marginL + (x-xlo)/(xhi-xlo)*pw }
	sy := func(y float64) float64 { return marginT + (yhi-y)/(yhi-ylo)*ph }

	fmt.Fprintf(&b, `<rect class="plot" x="%g" y="%g" width="%g" height="%g"/>`, marginL, marginT, pw, ph)
	for _, t := range yt {
		y := sy(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%g" x2="%g" y1="%.2f" y2="%.2f"/><text class="tick" x="%g" y="%.2f" text-anchor="end" dominant-baseline="middle">%s</text>`,
			marginL, marginL+pw, y, y, marginL-4, y, tickLabel(t, yt[1]-yt[0]))
	}
	for _, t := range xt {
		if t < xlo || t > xhi || t != math.Round(t) {
			continue // steps are integers
		}
		x := sx(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%.2f" x2="%.2f" y1="%g" y2="%g"/><text class="tick" x="%.2f" y="%g" text-anchor="middle">%s</text>`,
			x, x, marginT, marginT+ph, x, marginT+ph+14, tickLabel(t, math.Max(1, xt[1]-xt[0])))
	}
	fmt.Fprintf(&b, `<text class="axis" x="%g" y="%g" text-anchor="middle">step</text>`, marginL+pw/2, chartH-3)

	for _, l := range lines {
		color := palette[l.run%len(palette)]
		key := c.keys[l.key]
		if _, ok := c.band[key]; ok {
			var up, down []string
			for _, p := range l.pts {
				up = append(up, fmt.Sprintf("%.2f,%.2f", sx(p.x), sy(p.y+p.band)))
			}
			for i := len(l.pts) - 1; i >= 0; i-- {
				p := l.pts[i]
				down = append(down, fmt.Sprintf("%.2f,%.2f", sx(p.x), sy(p.y-p.band)))
			}
			fmt.Fprintf(&b, `<polygon class="band" fill="%s" points="%s %s"/>`, color, strings.Join(up, " "), strings.Join(down, " "))
		}
		var pts []string
		for _, p := range l.pts {
			pts = append(pts, fmt.Sprintf("%.2f,%.2f", sx(p.x), sy(p.y)))
		}
		fmt.Fprintf(&b, `<polyline class="series" data-run="%s" data-key="%s" stroke="%s"%s points="%s"/>`,
			html.EscapeString(runs[l.run].Name), html.EscapeString(key), color, dashAttr(dashes[l.key%len(dashes)]), strings.Join(pts, " "))
		if len(l.pts) <= maxMarkers {
			for _, p := range l.pts {
				tip := fmt.Sprintf("%s · %s · step %s: %s", runs[l.run].Name, key, label(p.x), strconv.FormatFloat(p.y, 'g', 6, 64))
				if p.band != 0 {
					tip += " ± " + strconv.FormatFloat(p.band, 'g', 4, 64)
				}
				fmt.Fprintf(&b, `<circle cx="%.2f" cy="%.2f" r="2.5" fill="%s"><title>%s</title></circle>`, sx(p.x), sy(p.y), color, html.EscapeString(tip))
			}
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// legendItem is one series of a chart as its legend shows it.
type legendItem struct{ name, color, dash string }

// legendItems lists the series of chart c that have values: the run's name (with the key
// when the chart has several), the run's colour and the key's dash.
func (c chart) legendItems(runs []*Run) []legendItem {
	var items []legendItem
	for ri, r := range runs {
		for ki, k := range c.keys {
			if len(seriesOf(r, k, "")) == 0 {
				continue
			}
			name := r.Name
			if len(c.keys) > 1 {
				name += " · " + k
			}
			if len(runs) == 1 && len(c.keys) > 1 {
				name = k
			}
			items = append(items, legendItem{name, palette[ri%len(palette)], dashes[ki%len(dashes)]})
		}
	}
	return items
}

// dashAttr is the stroke-dasharray attribute of a dash pattern ("" for a solid line).
func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return fmt.Sprintf(` stroke-dasharray="%s"`, dash)
}

// legend lists the series of chart c as HTML: a swatch in the run's colour and the key's dash.
func (c chart) legend(runs []*Run) string {
	var b strings.Builder
	for _, it := range c.legendItems(runs) {
		fmt.Fprintf(&b, `<span class="item"><svg width="26" height="10"><line x1="1" x2="25" y1="5" y2="5" stroke="%s" stroke-width="2.5"%s/></svg>%s</span>`,
			it.color, dashAttr(it.dash), html.EscapeString(it.name))
	}
	return b.String()
}

// ticks returns about n round values covering [lo, hi] (steps of 1, 2 or 5 × 10^k).
func ticks(lo, hi float64, n int) []float64 {
	span := hi - lo
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, f := range []float64{1, 2, 5, 10} {
		step = f * mag
		if raw <= step {
			break
		}
	}
	first := math.Floor(lo/step) * step
	var out []float64
	for v := first; len(out) < 4*n; v += step {
		out = append(out, math.Round(v/step)*step)
		if v >= hi {
			break
		}
	}
	if len(out) < 2 {
		out = []float64{lo, hi}
	}
	return out
}

// tickLabel formats a tick with as many decimals as the ticks' spacing needs, so that
// ticks over a narrow range (0.92570, 0.92572, …) stay distinct.
func tickLabel(v, spacing float64) string {
	if v == 0 {
		return "0"
	}
	decimals := max(0, int(-math.Floor(math.Log10(spacing)+1e-9)))
	if a := math.Abs(v); a >= 1e6 || a < 1e-4 || decimals > 8 {
		return strconv.FormatFloat(v, 'g', max(4, decimals-int(math.Floor(math.Log10(a)))), 64)
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// label formats a tick or a value compactly (at most four significant digits).
func label(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
