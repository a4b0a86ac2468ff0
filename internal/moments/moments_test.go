package moments

import (
	"math"
	"testing"
)

func TestMeanStd(t *testing.T) {
	tests := []struct {
		name      string
		xs        []float64
		mean, std float64
	}{
		{"empty", nil, 0, 0},
		{"one value has no spread", []float64{3}, 3, 0},
		{"two values", []float64{1, 3}, 2, math.Sqrt2},
		{"unbiased: divides by N−1", []float64{1, 2, 3, 4}, 2.5, math.Sqrt(5.0 / 3)},
		{"constant", []float64{-2, -2, -2}, -2, 0},
		{"binary rewards", []float64{1, 0, 0, 0}, 0.25, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mean, std := MeanStd(tt.xs)
			if math.Abs(mean-tt.mean) > 1e-15 || math.Abs(std-tt.std) > 1e-15 {
				t.Errorf("MeanStd(%v) = %v, %v, want %v, %v", tt.xs, mean, std, tt.mean, tt.std)
			}
			if m := Mean(tt.xs); m != mean {
				t.Errorf("Mean(%v) = %v, MeanStd's mean %v", tt.xs, m, mean)
			}
		})
	}
}
