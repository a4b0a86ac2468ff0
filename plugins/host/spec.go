package host

import (
	"context"
	"errors"
	"sync"
)

// Set is the running plugins of a run, one per reward, in the order of their configs.
type Set struct {
	Plugins []*Plugin
	// stopKill cancels the kill that StartAll's ctx would trigger.
	stopKill func() bool
}

// StartAll starts every plugin (concurrently). If one fails, the others are stopped
// and the first error in config order is returned. The plugins live no longer than
// ctx: when it is done, their processes are killed at once (Kill), so that a host
// that cancels its context on a signal leaves no plugin process or socket behind even
// if it exits before Close.
func StartAll(ctx context.Context, cfgs []Config) (*Set, error) {
	ps := make([]*Plugin, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps[i], errs[i] = Start(ctx, cfg)
		}()
	}
	wg.Wait()
	s := &Set{Plugins: ps}
	s.stopKill = context.AfterFunc(ctx, s.Kill)
	if err := errors.Join(errs...); err != nil {
		s.Close()
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	}
	return s, nil
}

// Close stops every plugin of the set (concurrently: each stop is bounded, see
// Plugin.Close, and the set's stop takes no longer than the slowest one).
func (s *Set) Close() error {
	if s.stopKill != nil {
		s.stopKill()
	}
	var wg sync.WaitGroup
	for _, p := range s.Plugins {
		if p != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.Close()
			}()
		}
	}
	wg.Wait()
	return nil
}

// Kill kills every plugin's processes at once (Plugin.Kill); it does not wait for
// calls in flight.
func (s *Set) Kill() {
	for _, p := range s.Plugins {
		if p != nil {
			p.Kill()
		}
	}
}
