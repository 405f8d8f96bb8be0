package extauthz

import (
	"context"
	"testing"
	"time"
)

// TestWithTimeoutIfSooner: the recheck is bounded by RecheckTimeout unless
// the caller's own deadline (Envoy's ext_authz timeout) comes first, in
// which case the caller's context is used as is.
func TestWithTimeoutIfSooner(t *testing.T) {
	const timeout = time.Minute

	t.Run("no caller deadline", func(t *testing.T) {
		before := time.Now()
		ctx, cancel := withTimeoutIfSooner(context.Background(), timeout)
		after := time.Now()
		d, ok := ctx.Deadline()
		if !ok || d.Before(before.Add(timeout)) || d.After(after.Add(timeout)) {
			t.Fatalf("deadline %v (ok=%v), want now+%v", d, ok, timeout)
		}
		cancel()
		if ctx.Err() == nil {
			t.Fatal("cancel did not end the bounded context")
		}
	})

	t.Run("caller deadline later", func(t *testing.T) {
		parent, pcancel := context.WithTimeout(context.Background(), time.Hour)
		defer pcancel()
		ctx, cancel := withTimeoutIfSooner(parent, timeout)
		defer cancel()
		pd, _ := parent.Deadline()
		if d, _ := ctx.Deadline(); !d.Before(pd) {
			t.Fatalf("deadline %v not bounded below the caller's %v", d, pd)
		}
	})

	t.Run("caller deadline sooner", func(t *testing.T) {
		parent, pcancel := context.WithTimeout(context.Background(), time.Second)
		defer pcancel()
		ctx, cancel := withTimeoutIfSooner(parent, timeout)
		defer cancel()
		if ctx != parent {
			t.Fatal("a caller deadline before the timeout should keep the caller's context")
		}
		pcancel()
		if ctx.Err() == nil {
			t.Fatal("caller cancellation not seen")
		}
	})
}
