// Command testplugin is a reward plugin whose behaviour the tests choose through its
// args: it scores well, or crashes, hangs, answers with the wrong number of scores, NaN
// or infinity, or an error. It is built by the tests and run as a real process.
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/rlif/rlif/plugins/sdk"
	"github.com/rlif/rlif/rewards"
)

// reward scores a completion by the length of its text (or its mean self-certainty
// with stat = "self_certainty"), misbehaving as mode says.
type reward struct {
	mode   string // "ok", "crash", "crash_once", "hang", "hang_once", "short", "nan", "inf", "error", "error_if_marker", "na_odd", "na_all", "panic", "env"
	marker string // file that crash_once/hang_once create before misbehaving once; error_if_marker fails while it exists; the variable that env scores
	stat   string
	stderr *os.File // the process's real stderr (go-plugin redirects os.Stderr once serving)
}

func str(args map[string]any, key, def string) (string, error) {
	v, ok := args[key]
	if !ok {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("arg %q: want a string, got %T", key, v)
	}
	return s, nil
}

func (r *reward) Configure(args map[string]any) error {
	var err error
	if r.mode, err = str(args, "mode", "ok"); err != nil {
		return err
	}
	if r.marker, err = str(args, "marker", ""); err != nil {
		return err
	}
	if r.stat, err = str(args, "stat", "length"); err != nil {
		return err
	}
	switch r.mode {
	case "bad_config":
		return errors.New("mode bad_config is refused")
	case "hang_configure":
		time.Sleep(time.Hour)
	}
	return nil
}

func (r *reward) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	switch r.mode {
	case "crash":
		fmt.Fprintln(r.stderr, "testplugin: crashing on purpose")
		os.Exit(3)
	case "crash_once":
		if _, err := os.Stat(r.marker); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(r.marker, []byte("crashed\n"), 0o644); err != nil {
				return nil, err
			}
			os.Exit(4)
		}
	case "hang":
		time.Sleep(time.Hour)
	case "hang_once":
		if _, err := os.Stat(r.marker); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(r.marker, []byte("hung\n"), 0o644); err != nil {
				return nil, err
			}
			time.Sleep(time.Hour)
		}
	case "error":
		return nil, errors.New("the reward refuses this batch")
	case "error_if_marker":
		if _, err := os.Stat(r.marker); err == nil {
			return nil, errors.New("the reward refuses this batch (marker present)")
		}
	case "panic":
		panic("testplugin panics on purpose")
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		n := len(g.Completions)
		if r.mode == "short" && i == len(groups)-1 {
			n--
		}
		out[i] = make([]rewards.Score, n)
		for j := 0; j < n; j++ {
			c := g.Completions[j]
			v := float64(len(c.Text))
			if r.mode == "env" { // the value of the environment variable named by marker
				var err error
				if v, err = strconv.ParseFloat(os.Getenv(r.marker), 64); err != nil {
					return nil, fmt.Errorf("$%s = %q: %v", r.marker, os.Getenv(r.marker), err)
				}
			}
			if r.stat == "self_certainty" {
				v = c.SelfCertaintyMean
			}
			switch {
			case r.mode == "nan" && j == 1:
				v = math.NaN()
			case r.mode == "inf" && j == 1:
				v = math.Inf(-1)
			}
			out[i][j] = rewards.Of(v)
			if r.mode == "na_all" || (r.mode == "na_odd" && j%2 == 1) {
				out[i][j] = rewards.NA()
			}
		}
	}
	return out, nil
}

func main() {
	sdk.Serve(&reward{stderr: os.Stderr}, sdk.Name("testplugin"), sdk.Summary("test plugin that misbehaves on demand"),
		sdk.Args(sdk.Arg{Name: "mode", Type: "string", Default: "ok", Description: "how to behave"}))
}
