package answer_test

import (
	"fmt"

	"github.com/rlif/rlif/rewards/answer"
)

func Example() {
	completion := `Half of the 70 apples is 35, so the fraction is $\boxed{\dfrac{1}{2}}$.`
	pred, ok := answer.Extract(completion)
	fmt.Println(pred, ok)
	fmt.Println(answer.Equivalent(pred, answer.Gold(`\frac12`)))
	fmt.Println(answer.Equivalent(pred, answer.Gold("He has 0.5 left.\n#### 0.5")))
	fmt.Println(answer.Normalize(`\left( 1.5, -13 \right)`))
	// Output:
	// \dfrac{1}{2} true
	// true
	// true
	// (3/2,-13)
}
