// Command envoy-standin runs the Envoy stand-in (mcpgw/e2e/envoystandin) as
// a process that takes Envoy's own command line, so an e2e harness can start
// "$ENVOY_BIN -c bootstrap.yaml --service-node ... --service-cluster ..."
// and get either real Envoy or the stand-in through the same code path.
//
// It is test infrastructure only. It reads the bootstrap like Envoy does:
// node identity, the ADS cluster, static clusters (hostnames are resolved
// once at start) and, without lds_config, the static listener. It serves on
// the listener's own address unless --listen overrides it. Flags Envoy has
// that do not apply (--base-id, --disable-hot-restart, --concurrency,
// --drain-time-s, --parent-shutdown-time-s) are accepted and ignored.
//
//	go build -o /tmp/envoy-standin ./e2e/envoystandin/cmd/envoy-standin
//	/tmp/envoy-standin -c envoy/bootstrap-ads.yaml --service-node envoy-0 \
//	    --cluster-addr mcpgw_xds=127.0.0.1:18000 --cluster-addr mcpgw_extauthz=127.0.0.1:9191
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"mcpgw/e2e/envoystandin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "envoy-standin:", err)
		os.Exit(1)
	}
}

// addrFlags collects repeated --cluster-addr name=host:port.
type addrFlags map[string]string

func (a addrFlags) String() string { return fmt.Sprint(map[string]string(a)) }

func (a addrFlags) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return errors.New("want name=host:port")
	}
	a[name] = addr
	return nil
}

// run starts the stand-in and blocks until ctx ends. started, when not nil,
// receives the running stand-in (tests use it).
func run(ctx context.Context, args []string, stderr io.Writer, started func(*envoystandin.StandIn)) error {
	fs := flag.NewFlagSet("envoy-standin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		config, node, cluster, level, listen string
		addrs                                = addrFlags{}
	)
	fs.StringVar(&config, "c", "", "bootstrap file (YAML or JSON)")
	fs.StringVar(&config, "config-path", "", "bootstrap file (YAML or JSON)")
	fs.StringVar(&node, "service-node", "", "node id (overrides the bootstrap)")
	fs.StringVar(&cluster, "service-cluster", "", "node cluster (overrides the bootstrap)")
	fs.StringVar(&level, "l", "info", "log level: trace, debug, info, warn/warning, error, critical, off")
	fs.StringVar(&level, "log-level", "info", "log level")
	fs.StringVar(&listen, "listen", "", "serve here instead of the listener's own address (stand-in only)")
	fs.Var(addrs, "cluster-addr", "name=host:port for a static cluster (repeatable; stand-in only)")
	for _, ignored := range []string{"base-id", "concurrency", "drain-time-s", "parent-shutdown-time-s", "component-log-level", "log-format"} {
		fs.String(ignored, "", "ignored (Envoy flag)")
	}
	fs.Bool("disable-hot-restart", false, "ignored (Envoy flag)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if config == "" {
		return errors.New("-c bootstrap file is required")
	}
	data, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	opts, err := envoystandin.OptionsFromBootstrap(data, addrs)
	if err != nil {
		return err
	}
	if node != "" {
		opts.NodeID = node
	}
	if cluster != "" {
		opts.Cluster = cluster
	}
	if listen != "" {
		opts.ListenAddr = listen
	} else {
		opts.UseListenerAddress = true
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel(level)}))
	si, err := envoystandin.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer si.Close()
	if started != nil {
		started(si)
	}
	<-ctx.Done()
	return nil
}

func logLevel(l string) slog.Level {
	switch strings.ToLower(l) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error", "critical":
		return slog.LevelError
	case "off":
		return slog.LevelError + 100
	}
	return slog.LevelInfo
}
