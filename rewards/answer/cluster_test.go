package answer

import (
	"math"
	"slices"
	"testing"
)

func TestCluster(t *testing.T) {
	tests := []struct {
		name      string
		answers   []string
		of        []int
		size      []int
		first     []int
		plurality int // -1: no answer at all
	}{
		{"empty group", nil, []int{}, nil, nil, -1},
		{"no answers", []string{"", ""}, []int{-1, -1}, nil, nil, -1},
		{"nothing left after normalization is no answer", []string{`\text{}`, `$ $`, "5"}, []int{-1, -1, 0}, []int{1}, []int{2}, 0},
		{"equivalent forms", []string{`\frac12`, "0.5", "2", "1/2", "", "2.0"}, []int{0, 0, 1, 0, -1, 1}, []int{3, 2}, []int{0, 2}, 0},
		{"the larger cluster wins", []string{"1", "2", "x = 2"}, []int{0, 1, 1}, []int{1, 2}, []int{0, 1}, 1},
		{"tie goes to the first to appear", []string{"4", "3", "3", "4"}, []int{0, 1, 1, 0}, []int{2, 2}, []int{0, 1}, 0},
		{"tie after a missing answer", []string{"", "3", "4", "4", "3"}, []int{-1, 0, 1, 1, 0}, []int{2, 2}, []int{1, 2}, 0},
		{"all distinct: the first", []string{"7", "8", "9"}, []int{0, 1, 2}, []int{1, 1, 1}, []int{0, 1, 2}, 0},
		// Equivalent is not transitive: 1 ~ 1.0000000009 ~ 1.0000000018 but 1 ≁
		// 1.0000000018. An answer is compared with each cluster's first answer only.
		{"not transitive: first answers decide", []string{"1", "1.0000000009", "1.0000000018"}, []int{0, 0, 1}, []int{2, 1}, []int{0, 2}, 0},
		{"not transitive: the middle first joins all", []string{"1.0000000009", "1", "1.0000000018"}, []int{0, 0, 0}, []int{3}, []int{0}, 0},
		{"tuples keep their order, sets do not", []string{`(1,2)`, `(2,1)`, `\{1,2\}`, `\{2,1\}`}, []int{0, 1, 2, 2}, []int{1, 1, 2}, []int{0, 1, 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Cluster(tt.answers)
			if !slices.Equal(c.Of, tt.of) || !slices.Equal(c.Size, tt.size) || !slices.Equal(c.First, tt.first) {
				t.Errorf("Cluster(%q) = of %v size %v first %v, want of %v size %v first %v", tt.answers, c.Of, c.Size, c.First, tt.of, tt.size, tt.first)
			}
			k, ok := c.Plurality()
			if ok != (tt.plurality >= 0) || ok && k != tt.plurality {
				t.Errorf("Plurality() = %d, %v, want %d", k, ok, tt.plurality)
			}
		})
	}
}

// TestEntropy checks the semantic-cluster entropy against sums worked by hand (in
// nats): a wrong base, a missing minus sign, unanswered completions pooled into one
// cluster or left out of G all give other numbers.
func TestEntropy(t *testing.T) {
	ln := math.Log
	tests := []struct {
		name  string
		texts []string
		want  float64
	}{
		{"empty group", nil, 0},
		{"unanimous", []string{`\boxed{4}`, "#### 4", "so 4.0"}, 0},
		// p = (1/2, 1/2): −2 · ½ ln ½ = ln 2.
		{"two halves", []string{`\boxed{1}`, `\boxed{2}`, `\boxed{1}`, `\boxed{2}`}, ln(2)},
		// p = (2/4, 1/4, 1/4): −(½ ln ½ + 2 · ¼ ln ¼) = 1.5 ln 2.
		{"half and two quarters", []string{`\boxed{1}`, `\boxed{1}`, `\boxed{2}`, `\boxed{3}`}, 1.5 * ln(2)},
		// Two unanswered completions are two clusters of 1/4, not one of 1/2:
		// p = (2/4, 1/4, 1/4) again.
		{"unanswered completions are clusters of their own", []string{`\boxed{7}`, "no idea", `\boxed{7}`, "pass"}, 1.5 * ln(2)},
		// All distinct: ln G, the threshold at which EMPO's code filters a group.
		{"all distinct", []string{"1", "2", "3"}, ln(3)},
		{"no answers at all", []string{"a", "b"}, ln(2)},
		// p = (3/5, 2/5): −(0.6 ln 0.6 + 0.4 ln 0.4).
		{"three and two", []string{"5", "5", "6", "5", "6"}, -(0.6*ln(0.6) + 0.4*ln(0.4))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClusterTexts(tt.texts).Entropy(); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("entropy of %q = %.15g, want %.15g", tt.texts, got, tt.want)
			}
		})
	}
}
