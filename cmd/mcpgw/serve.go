package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"mcpgw/config"
	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/postgres"
)

// Deps is what the serve framework hands to a component.
type Deps struct {
	// Config is validated; Config.SigningKeys(), KeyRing() and Allowlist()
	// are loaded.
	Config *config.Config
	// Store is open and reachable; the framework closes it after every
	// component has returned.
	Store store.Store
	// Logger is tagged with component=<name>.
	Logger *slog.Logger
	// Registry is the process's Prometheus registry (served on
	// listen.metrics). Register collectors here, never on the global
	// default registry.
	Registry *prometheus.Registry
	// Listener is bound to the component's address (oauth: listen.http,
	// authz: listen.authz, xds: listen.xds). The component serves on it
	// and must close it (serveHTTP/serveGRPC do).
	Listener net.Listener
}

// componentFunc runs one component until ctx is cancelled, then shuts it
// down gracefully (within Config.ShutdownTimeout) and returns nil. Any
// error it returns stops the whole process.
type componentFunc func(ctx context.Context, d Deps) error

// components holds the components built into this binary. Each registers
// itself from cmd/mcpgw/serve_<name>.go:
//
//	func init() { registerComponent(config.ComponentAuthz, runAuthz) }
var components = map[string]componentFunc{}

// registerComponent adds a component; it panics on an unknown or repeated
// name (a programming error caught by every test run).
func registerComponent(name string, fn componentFunc) {
	if !slices.Contains(config.AllComponents, name) {
		panic("mcpgw: registerComponent: unknown component " + name)
	}
	if _, dup := components[name]; dup {
		panic("mcpgw: registerComponent: duplicate component " + name)
	}
	components[name] = fn
}

// listenAddr maps a component to its listen address.
func listenAddr(c *config.Config, component string) string {
	switch component {
	case config.ComponentOAuth:
		return c.Listen.HTTP
	case config.ComponentAuthz:
		return c.Listen.Authz
	case config.ComponentXDS:
		return c.Listen.XDS
	}
	return ""
}

func runServe(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	cfg, err := config.Load(fs, args, a.environ)
	if err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	for _, c := range cfg.Components {
		if components[c] == nil {
			return usageErr(fmt.Errorf("component %q is not built into this binary yet (available: %s)", c, strings.Join(registered(), ", ")))
		}
	}
	return serve(ctx, a, cfg)
}

func registered() []string {
	var out []string
	for name := range components {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// serve runs cfg.Components (those registered, in dev) until ctx ends.
func serve(ctx context.Context, a *app, cfg *config.Config) error { return serveThen(ctx, a, cfg, nil) }

// afterReadyFunc runs once every listener is bound and the readiness line
// is printed (dev seeding, dev_seed.go). Its error is logged, not fatal.
type afterReadyFunc func(ctx context.Context, a *app, cfg *config.Config, st store.Store) error

// serveThen is serve with a hook run after the readiness line.
func serveThen(ctx context.Context, a *app, cfg *config.Config, afterReady afterReadyFunc) error {
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}

	st, storeKind, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Bind every listener before starting anything, so a port conflict
	// fails the start instead of half the servers.
	var run []string
	for _, name := range cfg.Components {
		if components[name] != nil {
			run = append(run, name)
		} else {
			log.Warn("component not built into this binary yet; not started", "component", name)
		}
	}
	listeners := map[string]net.Listener{}
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	var lc net.ListenConfig
	for _, name := range run {
		ln, err := lc.Listen(ctx, "tcp", listenAddr(cfg, name))
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: listen: %w", name, err)
		}
		listeners[name] = ln
	}
	var metricsLn net.Listener
	if cfg.Listen.Metrics != "" {
		if metricsLn, err = lc.Listen(ctx, "tcp", cfg.Listen.Metrics); err != nil {
			closeAll()
			return fmt.Errorf("metrics: listen: %w", err)
		}
	}

	// Listen addresses with port 0 become the bound ones, so components
	// that point at each other (xds routes Envoy to listen.http) and the
	// readiness line see real addresses.
	for name, ln := range listeners {
		bound := ln.Addr().String()
		switch name {
		case config.ComponentOAuth:
			cfg.Listen.HTTP = bound
		case config.ComponentAuthz:
			cfg.Listen.Authz = bound
		case config.ComponentXDS:
			cfg.Listen.XDS = bound
		}
	}
	if metricsLn != nil {
		cfg.Listen.Metrics = metricsLn.Addr().String()
	}
	// In dev the public URL defaults to the HTTP listener's address; with
	// port 0 it is only known now.
	if ln := listeners[config.ComponentOAuth]; ln != nil && cfg.Dev && strings.HasSuffix(cfg.PublicBaseURL, ":0") {
		base := "http://" + ln.Addr().String()
		if cfg.Issuer == cfg.PublicBaseURL {
			cfg.Issuer = base
		}
		cfg.PublicBaseURL = base
	}

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(gctx)
	if metricsLn != nil {
		g.Go(func() error { return serveHTTP(gctx, metricsLn, metricsHandler(reg, st), cfg.ShutdownTimeout.D()) })
	}
	if len(run) > 0 {
		job := newCleanupJob(st, cfg.AuditRetention.D(), log.With("component", "cleanup"), reg, time.Now)
		g.Go(func() error { return job.run(gctx, cfg.CleanupInterval.D()) })
	}
	for _, name := range run {
		d := Deps{Config: cfg, Store: st, Logger: log.With("component", name), Registry: reg, Listener: listeners[name]}
		fn := components[name]
		g.Go(func() error {
			if err := fn(gctx, d); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}

	// The readiness line: tests and scripts wait for it. Addresses are the
	// bound ones, so port 0 works.
	parts := []string{"mode=" + mode(cfg), "store=" + storeKind, "components=" + strings.Join(run, ",")}
	for _, name := range run {
		parts = append(parts, name+"="+listeners[name].Addr().String())
	}
	if metricsLn != nil {
		parts = append(parts, "metrics="+metricsLn.Addr().String())
	}
	parts = append(parts, "public_base_url="+cfg.PublicBaseURL)
	fmt.Fprintf(a.stdout, "mcpgw ready %s\n", strings.Join(parts, " "))
	log.Info("ready", "mode", mode(cfg), "store", storeKind, "components", strings.Join(run, ","))
	if afterReady != nil {
		if err := afterReady(gctx, a, cfg, st); err != nil {
			log.Warn("after-ready step failed", "err", err)
		}
	}

	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
		return nil
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.D().String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		log.Info("stopped")
		return nil
	case <-time.After(cfg.ShutdownTimeout.D() + time.Second):
		return fmt.Errorf("graceful shutdown did not finish within %v", cfg.ShutdownTimeout.D())
	}
}

func mode(cfg *config.Config) string {
	if cfg.Dev {
		return "dev"
	}
	return "serve"
}

// openStore opens Postgres when database_url is set (migrating it first in
// dev mode), else the embedded memory store (dev only; Validate enforces
// it).
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Store, string, error) {
	if cfg.DatabaseURL == "" {
		if !cfg.Dev {
			return nil, "", errors.New("database_url is required outside dev mode")
		}
		return memory.New(), "memory", nil
	}
	if cfg.Dev {
		if err := postgres.Migrate(ctx, cfg.DatabaseURL); err != nil {
			return nil, "", fmt.Errorf("dev: migrate: %w", err)
		}
	} else {
		// Servers never migrate on their own (replicas would race, and an
		// operator decides when the schema moves); they refuse to run on a
		// schema older than they need.
		cur, target, err := postgres.SchemaVersions(ctx, cfg.DatabaseURL)
		switch {
		case err != nil:
			return nil, "", fmt.Errorf("database: %w", err)
		case cur < target:
			return nil, "", fmt.Errorf("database schema is at version %d but this binary needs %d: run `mcpgw migrate up`", cur, target)
		case cur > target:
			log.Warn("database schema is newer than this binary (a newer release migrated it)", "schema_version", cur, "binary_version", target)
		}
	}
	st, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.WithLogger(log.With("component", "store")))
	if err != nil {
		return nil, "", fmt.Errorf("open database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := st.Ping(pctx); err != nil {
		st.Close()
		return nil, "", fmt.Errorf("database unreachable: %w", err)
	}
	return st, "postgres", nil
}

// metricsHandler serves /metrics from reg, /healthz (the process is up)
// and /readyz (the database answers).
func metricsHandler(reg *prometheus.Registry, st store.Store) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// serveHTTP serves h on ln until ctx ends, then shuts down gracefully
// within timeout. For component files.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveGRPC serves s on ln until ctx ends, then stops it gracefully,
// forcing a stop after timeout (long-lived streams such as ADS never end on
// their own). hs, when not nil, is the health service registered on s: it
// is drained first (NOT_SERVING for good, Watch streams ended) so health
// watchers learn of the stop and do not hold the graceful stop. For
// component files.
func serveGRPC(ctx context.Context, ln net.Listener, s *grpc.Server, hs *healthServer, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case err := <-errc:
		if hs != nil {
			hs.drain()
		}
		return err
	case <-ctx.Done():
	}
	if hs != nil {
		hs.drain()
	}
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(timeout):
		s.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// runDev: `mcpgw dev` runs every built-in component on loopback with the
// embedded memory store (or Postgres, migrated first, when database_url is
// set), ephemeral keys unless configured, and a dev-friendly default
// configuration.
func runDev(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	seed := addDevSeedFlags(fs)
	cfg, err := config.Load(fs, args, a.environ)
	if err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	cfg.Dev = true
	if err := seed.prepare(cfg); err != nil {
		return usageErr(err)
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(err)
	}
	return serveThen(ctx, a, cfg, seed.run)
}
