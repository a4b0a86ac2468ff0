package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/rlif/rlif/plugins/sdk"
	"github.com/rlif/rlif/rewards/builtin"
)

// runPlugin is the hidden `rlif plugin serve NAME`: the rlif binary serving one of its
// built-in rewards as a reward plugin, which is how the host runs every built-in (out of
// process, like a custom plugin). It is not meant to be run by hand.
func runPlugin(_ context.Context, args []string, _, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stderr, "usage: rlif plugin serve NAME\n\nserves the built-in reward NAME as a reward plugin; rlif starts it itself")
		return nil
	}
	if len(args) != 2 || args[0] != "serve" {
		return usageError{"usage: rlif plugin serve NAME"}
	}
	b, ok := builtin.Lookup(args[1])
	if !ok {
		return usageError{fmt.Sprintf("no built-in reward %q (built-ins: %s)", args[1], strings.Join(builtinNames(), ", "))}
	}
	sdk.ServePlugin(builtinPlugin(b))
	return nil
}

// builtinPlugin describes a built-in reward to the plugin SDK.
func builtinPlugin(b builtin.Builtin) sdk.Plugin {
	p := sdk.Plugin{Name: b.Name, Summary: b.Summary, New: b.New}
	for _, a := range b.Args {
		p.Args = append(p.Args, sdk.Arg{Name: a.Name, Type: a.Type, Default: a.Default, Description: a.Doc})
	}
	return p
}

func builtinNames() []string {
	var ns []string
	for _, b := range builtin.Builtins() {
		ns = append(ns, b.Name)
	}
	return ns
}
