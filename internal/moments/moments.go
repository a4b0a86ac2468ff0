// Package moments holds the sample mean and standard deviation shared by the
// rewards, the advantages, the training metrics and the evaluation. It depends on
// nothing, so that every layer can use it.
package moments

import "math"

// Mean returns the arithmetic mean of xs, or 0 for an empty slice.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// MeanStd returns the mean of xs and its unbiased (N−1) standard deviation, the
// group statistics of a GRPO advantage. Both are 0 for an empty slice, and the
// standard deviation of a single value is 0.
func MeanStd(xs []float64) (mean, std float64) {
	mean = Mean(xs)
	if len(xs) < 2 {
		return mean, 0
	}
	ss := 0.0
	for _, x := range xs {
		d := x - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}
