package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"mcpgw/config"
	"mcpgw/store/postgres"
)

// runMigrate: `mcpgw migrate up|status`. Only database_url is needed, so
// the full Validate (keys, URLs) is not required here.
func runMigrate(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "usage: mcpgw migrate up|status [--database-url URL | --config FILE]")
		fs.PrintDefaults()
	}
	var action string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	cfg, err := config.Load(fs, args, a.environ)
	if err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	if action == "" && fs.NArg() > 0 {
		action = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if cfg.DatabaseURL == "" {
		return usageErr(fmt.Errorf("database_url is required (MCPGW_DATABASE_URL or --database-url)"))
	}
	switch action {
	case "up":
		if err := postgres.Migrate(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "migrations applied")
		return nil
	case "status":
		return postgres.MigrationStatus(ctx, cfg.DatabaseURL, a.stdout)
	default:
		return usageErr(fmt.Errorf("want `migrate up` or `migrate status`, got %q", action))
	}
}
