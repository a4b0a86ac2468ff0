package eval

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/rlif/rlif/core/eval/stats"
)

// Pairing compares two evaluations of the same items, item by item: the test that tells
// whether one model is better than another on one item set (the unpaired Wilson
// intervals of each overlap long before a difference stops being significant).
type Pairing struct {
	Items int `json:"items"`
	// FirstOnly and SecondOnly count the discordant items: right under one evaluation only.
	FirstOnly  int `json:"first_only"`
	SecondOnly int `json:"second_only"`
	// Delta is the second's accuracy minus the first's on these items.
	Delta float64 `json:"delta"`
	// P is the two-sided exact McNemar p-value of the discordant counts.
	P float64 `json:"p"`
}

// Pair matches the records of two evaluations by item (row index and prompt) and tests
// their difference. Both must hold one completion per item (greedy or n = 1) and the same
// items; anything else is an error that says which.
func Pair(first, second []Record) (Pairing, error) {
	type key struct {
		index  int
		prompt string
	}
	index := func(recs []Record, which string) (map[key]bool, error) {
		m := make(map[key]bool, len(recs))
		for _, r := range recs {
			if r.Sample != 0 {
				return nil, fmt.Errorf("paired test: the %s evaluation has %d+ completions per item; it needs one", which, r.Sample+1)
			}
			k := key{r.Index, r.Prompt}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("paired test: the %s evaluation holds item %d twice", which, r.Index)
			}
			m[k] = r.Correct
		}
		return m, nil
	}
	a, err := index(first, "first")
	if err != nil {
		return Pairing{}, err
	}
	b, err := index(second, "second")
	if err != nil {
		return Pairing{}, err
	}
	if len(a) != len(b) {
		return Pairing{}, fmt.Errorf("paired test: %d items against %d; evaluate both on the same data and --limit", len(a), len(b))
	}
	var p Pairing
	for k, ca := range a {
		cb, ok := b[k]
		if !ok {
			return Pairing{}, fmt.Errorf("paired test: item %d (%.40q) is in one evaluation only; evaluate both on the same data", k.index, k.prompt)
		}
		p.Items++
		switch {
		case ca && !cb:
			p.FirstOnly++
		case cb && !ca:
			p.SecondOnly++
		}
	}
	if p.Items > 0 {
		p.Delta = float64(p.SecondOnly-p.FirstOnly) / float64(p.Items)
	}
	p.P, err = stats.McNemarExact(p.FirstOnly, p.SecondOnly)
	return p, err
}

// Compared is one row of PairedTable: an evaluation set against a reference.
type Compared struct {
	Label, Reference, Data string
	Pairing                Pairing
}

// PairedTable writes the pairings: per row the accuracy difference in points, the items
// that got better and worse, and the exact McNemar p-value.
func PairedTable(w io.Writer, rows []Compared) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Paired on the same items\tagainst\tdata\tΔ accuracy\tbetter / worse / items\texact McNemar p\t\n")
	for _, r := range rows {
		p := r.Pairing
		fmt.Fprintf(tw, "%s\t%s\t%s\t%+.1f pts\t%d / %d / %d\t%.3g\t\n", r.Label, r.Reference, r.Data, 100*p.Delta, p.SecondOnly, p.FirstOnly, p.Items, p.P)
	}
	return tw.Flush()
}
