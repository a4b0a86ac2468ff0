package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rlif/rlif/policy/sampling"
)

// checkSamplingFlags validates sampling flags with the sampler's own rules
// (sampling.Params.Validate) and reports a bad value as a usage error naming the flag.
func checkSamplingFlags(p sampling.Params, threads int) error {
	err := p.Validate()
	if err == nil {
		err = sampling.CheckThreads("threads", threads)
	}
	var pe *sampling.ParamError
	if errors.As(err, &pe) {
		return usageError{pe.Flag()}
	}
	return err
}

// checkOutDir returns an error when dir cannot become an output directory: it is a file,
// it holds anything already (an earlier output, or a user's files: never written over,
// as export and convert refuse theirs), or the nearest existing directory on its path is
// not writable. It creates nothing, so
// a run that fails later leaves no trace; the output itself is written by temporary files
// renamed into place.
func checkOutDir(flag, dir string) error {
	p := filepath.Clean(dir)
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				if p == filepath.Clean(dir) {
					return fmt.Errorf("%s %s is a file; give a directory (it will hold one subdirectory or the files of the evaluation)", flag, dir)
				}
				return fmt.Errorf("%s %s: %s is a file, not a directory", flag, dir, p)
			}
			if p == filepath.Clean(dir) {
				if ents, err := os.ReadDir(p); err != nil {
					return fmt.Errorf("%s %s: %w", flag, dir, err)
				} else if len(ents) > 0 {
					return fmt.Errorf("%s %s exists and is not empty; name a new directory or remove it", flag, dir)
				}
			}
			probe, err := os.CreateTemp(p, ".rlif-write-check-*")
			if err != nil {
				return fmt.Errorf("%s %s: cannot write in %s: %w", flag, dir, p, errors.Unwrap(err))
			}
			probe.Close()
			os.Remove(probe.Name())
			return nil
		}
		// A path through a file (ENOTDIR) is found at that file, further up.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("%s %s: %w", flag, dir, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fmt.Errorf("%s %s: %w", flag, dir, err)
		}
		p = parent
	}
}

// seedFlag defines a --seed flag on fs: a random seed, an integer from 0 to the largest
// TOML integer (a run's config.toml records it, and must read back). flag's own Uint64
// refuses -1 with only "parse error"; this one says what it wants.
func seedFlag(fs *flag.FlagSet, usage string) *uint64 {
	var s seedValue
	fs.Var(&s, "seed", usage)
	return (*uint64)(&s)
}

type seedValue uint64

func (s *seedValue) String() string { return strconv.FormatUint(uint64(*s), 10) }

func (s *seedValue) Set(v string) error {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 63)
	if err != nil {
		return fmt.Errorf("want an integer from 0 to %d", math.MaxInt64)
	}
	*s = seedValue(n)
	return nil
}
