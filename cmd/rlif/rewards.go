package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/rlif/rlif/plugins"
	"github.com/rlif/rlif/rewards/builtin"
)

// runRewards lists the built-in rewards with their arguments.
func runRewards(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rewards", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built-in rewards (name them in [[rewards]] tables; reward plugin protocol version %d):\n", plugins.ProtocolVersion)
	for _, b := range builtin.Builtins() {
		fmt.Fprintf(stdout, "\n%s\n    %s\n", b.Name, b.Summary)
		if len(b.Args) == 0 {
			fmt.Fprintln(stdout, "    args: none")
			continue
		}
		fmt.Fprintln(stdout, "    args:")
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, a := range b.Args {
			def := "no default"
			if a.Default != nil {
				js, err := json.Marshal(a.Default)
				if err != nil {
					return fmt.Errorf("reward %s: arg %s: default: %w", b.Name, a.Name, err)
				}
				def = "default " + string(js)
			}
			fmt.Fprintf(tw, "      %s\t%s\t%s\t%s\n", a.Name, a.Type, def, a.Doc)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	// Not a reward, but what any mix of them can use (README, Rewards).
	fmt.Fprintln(stdout, "\n[advantage] entropy_filter_max = h\n    EMPO's filter (arXiv 2504.05812): a group whose semantic-cluster entropy (over its answers, in nats) is at or above h gets no advantage, whatever the rewards; 0 (the default) turns it off")
	return nil
}
