package data

import (
	"fmt"
	"strconv"
)

// Arithmetic generates n one- and two-step arithmetic word problems with gold answers,
// the same ones for the same seed. They are the embedded default prompt set: small enough
// numbers that a 135M model sometimes gets them right, so rewards have signal.
func Arithmetic(n int, seed uint64) []Row {
	rng := newSplitMix(seed)
	intn := func(lo, hi int) int { return lo + int(rng.next()%uint64(hi-lo+1)) }
	names := []string{"Tom", "Sara", "Ali", "Mei", "Lena", "Omar", "Ravi", "Ana", "Ben", "Yuki"}
	items := []string{"apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells"}
	type problem func() (string, int)
	kinds := []problem{
		func() (string, int) {
			a, b := intn(3, 40), intn(2, 30)
			name, it := pick(names, rng), pick(items, rng)
			return fmt.Sprintf("%s has %d %s and gets %d more. How many %s does %s have now?", name, a, it, b, it, name), a + b
		},
		func() (string, int) {
			a, b := intn(20, 60), intn(2, 19)
			it := pick(items, rng)
			return fmt.Sprintf("%s had %d %s and gave %d of them to a friend. How many %s are left?", pick(names, rng), a, it, b, it), a - b
		},
		func() (string, int) {
			a, b := intn(2, 12), intn(2, 12)
			it := pick(items, rng)
			return fmt.Sprintf("A box holds %d %s. How many %s are in %d boxes?", a, it, it, b), a * b
		},
		func() (string, int) {
			k, b := intn(2, 10), intn(2, 9)
			it := pick(items, rng)
			return fmt.Sprintf("%d %s are shared equally among %d children. How many %s does each child get?", k*b, it, b, it), k
		},
		func() (string, int) {
			p, n := intn(2, 9), intn(2, 6)
			bill := 50
			if p*n < 20 {
				bill = 20
			}
			name := pick(names, rng)
			return fmt.Sprintf("A pen costs %d dollars. %s buys %d pens and pays with a %d dollar bill. How much change does %s get, in dollars?", p, name, n, bill, name), bill - p*n
		},
		func() (string, int) {
			s, h := intn(20, 90), intn(2, 5)
			return fmt.Sprintf("A train travels at %d km per hour for %d hours. How many km does it travel?", s, h), s * h
		},
		func() (string, int) {
			a, b, c := intn(5, 30), intn(5, 30), intn(2, 10)
			name := pick(names, rng)
			return fmt.Sprintf("%s reads %d pages on Monday and %d pages on Tuesday, then %d fewer pages on Wednesday than on Tuesday. How many pages does %s read in the three days?", name, a, b, c, name), a + b + (b - c)
		},
	}
	rows := make([]Row, n)
	for i := range rows {
		q, ans := kinds[rng.next()%uint64(len(kinds))]()
		rows[i] = Row{Prompt: q, Fields: map[string]string{"answer": strconv.Itoa(ans), "source": "rlif-arithmetic"}, Line: i + 1}
	}
	return rows
}

func pick(xs []string, rng *splitMix) string { return xs[rng.next()%uint64(len(xs))] }

// Drills generates n distinct bare arithmetic questions ("What is 47 + 38?"): two-digit
// addition, subtraction with a non-negative result, and the 2-12 times tables, drawn with
// equal odds (the times tables hold only 121 questions, so a large set has fewer). They
// are the experiment set of docs/experiments/table1-cpu.md: the default 135M model answers
// about 40% of them greedily, where a label-free reward has room to help or hurt, while it
// answers about 2% of GSM8K and MATH. Questions listed in exclude are skipped, so a test
// split can be kept apart from its train split.
func Drills(n int, seed uint64, exclude map[string]bool) []Row {
	rng := newSplitMix(seed)
	intn := func(lo, hi int) int { return lo + int(rng.next()%uint64(hi-lo+1)) }
	seen := map[string]bool{}
	rows := make([]Row, 0, n)
	for len(rows) < n {
		var q string
		var ans int
		switch rng.next() % 3 {
		case 0:
			a, b := intn(10, 99), intn(10, 99)
			q, ans = fmt.Sprintf("What is %d + %d?", a, b), a+b
		case 1:
			a := intn(20, 99)
			b := intn(1, a)
			q, ans = fmt.Sprintf("What is %d - %d?", a, b), a-b
		default:
			a, b := intn(2, 12), intn(2, 12)
			q, ans = fmt.Sprintf("What is %d * %d?", a, b), a*b
		}
		if seen[q] || exclude[q] {
			continue
		}
		seen[q] = true
		rows = append(rows, Row{Prompt: q, Fields: map[string]string{"answer": strconv.Itoa(ans)}, Line: len(rows) + 1})
	}
	return rows
}

// DrillSplits returns the train and test splits of the drill sets that come with the
// repository (data/arith_train.jsonl, data/arith_test.jsonl): disjoint by question. The
// 2000 train questions take all 121 times-table ones, so the 300 test questions are
// additions and subtractions only (153 and 147).
// WordProblemsTest is the arith-words-test set: 300 of the built-in word problems
// (Arithmetic) with a seed no run of the examples uses. It is the transfer set of
// docs/experiments/label-free.md: arithmetic in a form the drills of arith-train never
// show (a story, one or two steps), to ask whether what training on the drills taught
// carries over.
func WordProblemsTest() []Row { return Arithmetic(300, 20261207) }

func DrillSplits() (train, test []Row) {
	train = Drills(2000, 1, nil)
	ex := make(map[string]bool, len(train))
	for _, r := range train {
		ex[r.Prompt] = true
	}
	return train, Drills(300, 2, ex)
}
