package train

import (
	"context"
)

// stopRequested says whether the run was asked to stop; in a job, whether any rank was
// (every rank asks at the same points, and all stop together).
func (r *run) stopRequested() (bool, error) {
	return r.job.any(r.stopAsked())
}

// stopAsked says whether this process was asked to stop (Options.Stop is closed).
func (r *run) stopAsked() bool {
	if r.opt.Stop == nil {
		return false
	}
	select {
	case <-r.opt.Stop:
		return true
	default:
		return false
	}
}

// untilStop returns a context that ends with ctx or when the run is asked to stop, and
// the function that releases it.
func (r *run) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	if r.opt.Stop != nil {
		go func() {
			select {
			case <-r.opt.Stop:
				cancel()
			case <-c.Done():
			}
		}()
	}
	return c, cancel
}
