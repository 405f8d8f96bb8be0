// Command mcpgw is the one binary of the MCP gateway (DESIGN §1): it runs
// any subset of the servers (serve --components=oauth,authz,xds), applies
// database migrations (migrate), creates keys (keygen) and runs everything
// locally on an embedded store (dev).
//
// main stays thin: parse a typed configuration, Validate it once, start the
// servers in an errgroup, shut down gracefully on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// errUsage marks errors that are the caller's fault (bad flags, bad
// configuration): exit code 2.
var errUsage = errors.New("usage")

type command struct {
	name, summary string
	run           func(ctx context.Context, a *app, args []string) error
}

// app carries the process's I/O so tests can run commands in-process.
type app struct {
	stdout, stderr io.Writer
	environ        []string
}

func commands() []command {
	return []command{
		{"serve", "run servers: serve --components=oauth,authz,xds", runServe},
		{"dev", "run every built-in server locally on an embedded store", runDev},
		{"migrate", "apply (up) or list (status) database migrations", runMigrate},
		{"keygen", "write a new RSA signing key and a new encryption key", runKeygen},
		{"reencrypt", "rewrite stored secrets under the newest encryption key", runReencrypt},
		{"bootstrap", "create the first system admin and print its API token once", runBootstrap},
		{"admin", "manage users, orgs, configs, assignments, audit over the API", runAdmin},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a graceful shutdown; restoring the default
	// handlers then lets a second one end the process at once.
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, &app{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ()}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, a *app, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(a.stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, a, args[1:])
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			fmt.Fprintf(a.stderr, "mcpgw %s: %v\n", c.name, err)
			return exitUsage
		default:
			fmt.Fprintf(a.stderr, "mcpgw %s: %v\n", c.name, err)
			return exitError
		}
	}
	fmt.Fprintf(a.stderr, "mcpgw: unknown command %q\n\n", args[0])
	usage(a.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mcpgw <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `mcpgw <command> -h` for the command's flags. Every flag also has an")
	fmt.Fprintln(w, "MCPGW_* environment variable and a YAML key; see README.md.")
}

// usageErr wraps err as a usage error (exit code 2).
func usageErr(err error) error { return fmt.Errorf("%w: %w", errUsage, err) }
