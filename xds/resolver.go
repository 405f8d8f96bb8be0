package xds

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"mcpgw/domain/addrpolicy"
)

// hostState is the resolution state of one upstream host name (shared by
// every config that uses the host).
type hostState struct {
	// addrs are the validated addresses (sorted), nil when the host has
	// none we may use: rejected, never resolved, or failing for longer
	// than the grace time.
	addrs []netip.Addr
	// plainOK reports whether plain http is permitted to this host: the
	// dev/test allowlist names the host or covers every address.
	plainOK bool
	// problem is "" when addrs are usable, else a stable reason label:
	// "non_public_address" or "resolution_failed".
	problem string
	// detail is the non-secret explanation of the problem (policy reason).
	detail string
	lastOK time.Time
	nextAt time.Time
}

// Problem labels (metric label values and audit reasons).
const (
	problemNonPublic = "non_public_address"
	problemResolve   = "resolution_failed"
	problemPlainHTTP = "plain_http_not_allowed"
	problemBadURL    = "invalid_upstream_url"
	// problemPending: a new host whose first resolution is in flight. Not
	// audited; the outcome (endpoints or a real problem) is.
	problemPending = "resolution_pending"
)

// resolver keeps the host table and re-resolves hosts when they are due.
// It is safe for concurrent use.
type resolver struct {
	opts    Options
	metrics *metrics

	mu    sync.Mutex
	hosts map[string]*hostState
}

func newResolver(opts Options, m *metrics) *resolver {
	return &resolver{opts: opts, metrics: m, hosts: map[string]*hostState{}}
}

// ttlCapture adapts a TTLResolver to addrpolicy.Resolver so ResolvePublic
// (which handles IP literals and numeric-looking names) stays the one
// resolution path, and remembers the TTL of the last answer.
type ttlCapture struct {
	r   TTLResolver
	ttl time.Duration
}

func (t *ttlCapture) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ttl, err := t.r.LookupNetIPTTL(ctx, host)
	t.ttl = ttl
	return addrs, err
}

// lookup resolves and validates one host. It returns the validated
// addresses, how long they may be trusted (0: unknown), and an error that
// matches addrpolicy.ErrNotPublic or addrpolicy.ErrResolve.
func (r *resolver) lookup(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ResolveTimeout)
	defer cancel()
	var res addrpolicy.Resolver = r.opts.Resolver
	var capture *ttlCapture
	if tr, ok := r.opts.Resolver.(TTLResolver); ok {
		capture = &ttlCapture{r: tr}
		res = capture
	}
	addrs, err := addrpolicy.ResolvePublic(ctx, res, host, r.opts.Allowlist)
	if err != nil {
		return nil, 0, err
	}
	addrs = slices.Clone(addrs)
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	var ttl time.Duration
	if capture != nil {
		ttl = capture.ttl
	}
	return addrs, ttl, nil
}

// interval turns a record TTL into the next re-resolution delay, bounded
// by [MinResolveInterval, MaxResolveInterval] so a 0-second TTL cannot make
// us hammer DNS and a day-long TTL cannot keep a rebound name pinned.
func (r *resolver) interval(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = r.opts.ResolveInterval
	}
	return min(max(ttl, r.opts.MinResolveInterval), r.opts.MaxResolveInterval)
}

// apply records the outcome of one resolution of host at now and reports
// whether the usable state (addresses, plain-http permission or problem)
// changed. Failure handling is fail closed: a non-public answer drops the
// addresses at once; a lookup error keeps the last good addresses only
// until lastOK + ResolveGrace.
func (r *resolver) apply(host string, addrs []netip.Addr, ttl time.Duration, err error, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hosts[host]
	if !ok {
		h = &hostState{}
		r.hosts[host] = h
	}
	before := *h
	switch {
	case err == nil:
		h.addrs, h.problem, h.detail, h.lastOK = addrs, "", "", now
		h.plainOK = r.opts.Allowlist.AllowsHost(host) || allAllowlisted(r.opts.Allowlist, addrs)
		h.nextAt = now.Add(r.interval(ttl))
	case errors.Is(err, addrpolicy.ErrNotPublic):
		h.addrs, h.plainOK, h.problem = nil, false, problemNonPublic
		var npe *addrpolicy.NotPublicError
		if errors.As(err, &npe) {
			h.detail = npe.Reason
		}
		h.nextAt = now.Add(r.opts.MinResolveInterval)
		r.metrics.resolveRejected.Inc()
	default:
		r.metrics.resolveFailures.Inc()
		h.nextAt = now.Add(r.opts.MinResolveInterval)
		if h.addrs == nil || now.Sub(h.lastOK) >= r.opts.ResolveGrace {
			h.addrs, h.plainOK, h.problem, h.detail = nil, false, problemResolve, ""
		}
		// else: within grace, keep serving the last validated answer.
		// Retry sooner than the grace expires so a transient failure heals.
		if g := h.lastOK.Add(r.opts.ResolveGrace); h.addrs != nil && g.Before(h.nextAt) {
			h.nextAt = g
		}
	}
	return !slices.Equal(before.addrs, h.addrs) || before.plainOK != h.plainOK || before.problem != h.problem
}

func allAllowlisted(a addrpolicy.Allowlist, addrs []netip.Addr) bool {
	if len(addrs) == 0 {
		return false
	}
	for _, ip := range addrs {
		if !a.AllowsAddr(ip) {
			return false
		}
	}
	return true
}

// state returns a copy of host's state and whether it is known.
func (r *resolver) state(host string) (hostState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hosts[host]
	if !ok {
		return hostState{}, false
	}
	return *h, true
}

// ensure resolves every host in hosts that is not in the table yet
// (concurrently, bounded) so a new config gets endpoints in the same build.
func (r *resolver) ensure(ctx context.Context, hosts []string) {
	var todo []string
	r.mu.Lock()
	for _, h := range hosts {
		if _, ok := r.hosts[h]; !ok {
			todo = append(todo, h)
		}
	}
	r.mu.Unlock()
	r.resolveAll(ctx, todo)
}

// addPending records hosts not in the table yet as pending (no endpoints,
// not due for the periodic loop until their first lookup has had time to
// finish) and returns them, so the caller can resolve them off the build
// loop.
func (r *resolver) addPending(hosts []string, now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, h := range hosts {
		if _, ok := r.hosts[h]; !ok {
			r.hosts[h] = &hostState{problem: problemPending, nextAt: now.Add(r.opts.ResolveTimeout)}
			out = append(out, h)
		}
	}
	return out
}

// resolveAll resolves hosts concurrently and returns those whose usable
// state changed.
func (r *resolver) resolveAll(ctx context.Context, hosts []string) []string {
	if len(hosts) == 0 {
		return nil
	}
	var (
		mu      sync.Mutex
		changed []string
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(defaultResolveConcurrency)
	for _, h := range hosts {
		g.Go(func() error {
			addrs, ttl, err := r.lookup(gctx, h)
			if ctx.Err() != nil {
				return nil // shutting down: record nothing
			}
			if r.apply(h, addrs, ttl, err, r.opts.Now()) {
				mu.Lock()
				changed = append(changed, h)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	slices.Sort(changed)
	return changed
}

// resolveDue re-resolves every host whose time has come and returns the
// hosts whose usable state changed.
func (r *resolver) resolveDue(ctx context.Context) []string {
	now := r.opts.Now()
	var due []string
	r.mu.Lock()
	for h, st := range r.hosts {
		if !now.Before(st.nextAt) {
			due = append(due, h)
		}
	}
	r.mu.Unlock()
	return r.resolveAll(ctx, due)
}

// retain forgets hosts no config uses any more.
func (r *resolver) retain(used map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for h := range r.hosts {
		if used[h] == 0 {
			delete(r.hosts, h)
		}
	}
}
