package eval

import (
	"fmt"
	"image/color"
	"io"
	"math"

	"github.com/rlif/rlif/core/eval/stats"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// histogramBins is the number of bins of the calibration histogram.
const histogramBins = 30

// Histogram draws, as a PNG, the distributions of self-certainty of the correct and of
// the incorrect completions of an evaluation, on shared bins, each normalized to the
// share of its own class so that classes of very different sizes compare.
func Histogram(w io.Writer, res *Result) error {
	var right, wrong []float64
	for _, r := range res.Records {
		if r.Correct {
			right = append(right, r.SelfCertainty)
		} else {
			wrong = append(wrong, r.SelfCertainty)
		}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range res.Records {
		lo, hi = math.Min(lo, r.SelfCertainty), math.Max(hi, r.SelfCertainty)
	}
	if len(res.Records) == 0 {
		lo, hi = 0, 1
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-0.5, hi+0.5
	}
	width := (hi - lo) / histogramBins

	s := res.Summary
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Self-certainty of correct vs incorrect completions\n%s on %s (%d items, accuracy %.1f%%)",
		s.Label, s.DataName, s.Items, 100*s.Accuracy)
	if t := s.Calibration.Test; t != nil {
		p.Title.Text += fmt.Sprintf("\nMann-Whitney U = %.0f, p = %.3g, r = %.3f, AUC = %.3f", t.U, t.P, t.R, t.AUC)
	} else {
		p.Title.Text += "\n(one class is empty: no test)"
	}
	p.X.Label.Text = "self-certainty (mean over tokens of KL(U || p), nats)"
	p.Y.Label.Text = "share of the class's completions"
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(8)
	p.Add(plotter.NewGrid())

	classes := []struct {
		name   string
		values []float64
		fill   color.Color
		line   color.Color
	}{
		{"incorrect", wrong, color.NRGBA{R: 214, G: 39, B: 40, A: 110}, color.NRGBA{R: 160, G: 20, B: 20, A: 255}},
		{"correct", right, color.NRGBA{R: 31, G: 119, B: 180, A: 130}, color.NRGBA{R: 10, G: 70, B: 140, A: 255}},
	}
	top := 0.0
	for _, c := range classes {
		if len(c.values) == 0 {
			continue
		}
		bs := bins(c.values, lo, width)
		for _, b := range bs {
			top = math.Max(top, b.Weight)
		}
		h := &plotter.Histogram{
			Bins:      bs,
			Width:     width,
			FillColor: c.fill,
			LineStyle: draw.LineStyle{Color: c.line, Width: vg.Points(0.8)},
		}
		p.Add(h)
		p.Legend.Add(fmt.Sprintf("%s (n = %d, median %.3f)", c.name, len(c.values), stats.Median(c.values)), h)
	}
	// Room above the bars for the legend, and a bin's width of margin on each side.
	p.Y.Min, p.Y.Max = 0, 1.3*top
	p.X.Min, p.X.Max = lo-width, hi+width
	wt, err := p.WriterTo(9*vg.Inch, 5.5*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("histogram: %w", err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("histogram: %w", err)
	}
	return nil
}

// bins counts values into histogramBins bins of the given width from lo, as shares.
func bins(values []float64, lo, width float64) []plotter.HistogramBin {
	out := make([]plotter.HistogramBin, histogramBins)
	for i := range out {
		out[i].Min = lo + float64(i)*width
		out[i].Max = lo + float64(i+1)*width
	}
	share := 1 / float64(len(values))
	for _, v := range values {
		i := min(histogramBins-1, max(0, int((v-lo)/width)))
		out[i].Weight += share
	}
	return out
}
