// Package num holds the one definition of a usable float: finite, neither NaN nor ±Inf.
// Rewards, advantages, statistics and config values are all checked against it.
package num

import "math"

// Finite reports whether x is neither NaN nor an infinity.
func Finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
