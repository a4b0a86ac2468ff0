package report

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"

	"github.com/rlif/rlif/internal/atomicfile"
)

// legendRow is the height of one legend line in a standalone chart, in SVG user units.
const legendRow = 16.0

// WriteCharts writes the charts of runs whose metric keys are listed in keys (all charts
// when keys is empty; a merged chart such as time per phase is named by its prefix,
// "time") as standalone SVG files in dir, one per chart, named after the key with '/'
// as '_'. Each file carries its title, the runs' legend and its own style, so it renders
// the same in a browser, an image viewer or a Markdown page. It returns the files written.
func WriteCharts(dir string, runs []*Run, keys []string) ([]string, error) {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var charts []chart
	found := map[string]bool{}
	for _, s := range layout(runs) {
		for _, c := range s.charts {
			if len(want) == 0 || want[c.id] {
				charts = append(charts, c)
				found[c.id] = true
			}
		}
	}
	var missing []string
	for _, k := range keys {
		if !found[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("charts: no metric %s in the runs' metrics.jsonl", strings.Join(missing, ", "))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("charts: %w", err)
	}
	var paths []string
	for _, c := range charts {
		p := filepath.Join(dir, strings.ReplaceAll(c.id, "/", "_")+".svg")
		if err := atomicfile.WriteFile(p, []byte(c.standalone(runs))); err != nil {
			return paths, fmt.Errorf("charts: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// standalone is chart c as a whole SVG document: a title line, the plot, and one legend
// line per series below it.
func (c chart) standalone(runs []*Run) string {
	items := c.legendItems(runs)
	const titleH = 20.0
	h := titleH + chartH + legendRow*float64(len(items)) + 4
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %g %g" width="%g" height="%g">`, chartW, h, chartW, h)
	fmt.Fprintf(&b, "<style>\n%s\ntext.title { font: 600 13px ui-monospace, monospace; fill: #222; }\ntext.legend { font: 12px system-ui, sans-serif; fill: #444; }\n</style>", chartStyle)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/><text class="title" x="%g" y="14">%s</text>`, marginL, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<g transform="translate(0 %g)">%s</g>`, titleH, c.svg(runs))
	for i, it := range items {
		y := titleH + chartH + legendRow*float64(i) + legendRow/2
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="%s" stroke-width="2.5"%s/><text class="legend" x="%g" y="%g" dominant-baseline="middle">%s</text>`,
			marginL, marginL+24, y, y, it.color, dashAttr(it.dash), marginL+30, y, html.EscapeString(it.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
