package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"mcpgw/api"
	"mcpgw/config"
	"mcpgw/store"
	"mcpgw/store/postgres"
)

// runBootstrap: `mcpgw bootstrap --email EMAIL` creates the first system
// admin directly in the database (DESIGN §7) and prints a personal API
// token for it, once: only its SHA-256 is stored. It refuses to run when
// a system admin already exists — from then on, admins are made through
// the API — so a leaked database URL alone cannot mint a second root
// quietly (every later change goes through the audited API).
func runBootstrap(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	email := fs.String("email", "", "email of the first system admin (required)")
	name := fs.String("display-name", "", "display name")
	tokenName := fs.String("token-name", "bootstrap", "name of the API token printed once")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "usage: mcpgw bootstrap --email EMAIL [--display-name NAME] [--database-url URL | --config FILE]")
		fs.PrintDefaults()
	}
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
	addr := strings.ToLower(strings.TrimSpace(*email))
	if addr == "" || !strings.Contains(addr, "@") {
		return usageErr(errors.New("--email is required and must be an email address"))
	}
	if cfg.DatabaseURL == "" {
		return usageErr(errors.New("database_url is required (MCPGW_DATABASE_URL or --database-url)"))
	}
	cur, target, err := postgres.SchemaVersions(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if cur < target {
		return fmt.Errorf("database schema is at version %d but this binary needs %d: run `mcpgw migrate up` first", cur, target)
	}
	st, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer st.Close()
	tok, u, err := bootstrapAdmin(ctx, st, addr, *name, *tokenName, time.Now().UTC())
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "system admin %s (%s) is ready.\n", u.Email, u.ID)
	fmt.Fprintln(a.stdout, "Its API token is shown this once; store it now:")
	fmt.Fprintf(a.stdout, "MCPGW_TOKEN=%s\n", tok)
	return nil
}

// errAdminExists: bootstrap runs once.
var errAdminExists = errors.New("a system admin already exists: create further admins through the API (mcpgw admin users create --system-admin)")

// bootstrapAdmin creates (or promotes) the first system admin and issues
// its token.
func bootstrapAdmin(ctx context.Context, st store.Store, email, name, tokenName string, now time.Time) (string, store.User, error) {
	us, err := st.ListUsers(ctx, false)
	if err != nil {
		return "", store.User{}, err
	}
	for _, u := range us {
		if u.SystemAdmin {
			return "", store.User{}, errAdminExists
		}
	}
	ev := &store.AuditEvent{Type: "user.bootstrap_admin", Outcome: "success", Metadata: map[string]string{"via": "bootstrap"}}
	u, err := st.GetUserByEmail(ctx, email)
	switch {
	case err == nil:
		ev.UserID = u.ID
		if u.Status != store.UserActive {
			if u, err = st.SetUserStatus(ctx, u.ID, store.UserActive, nil); err != nil {
				return "", store.User{}, err
			}
		}
		if u, err = st.SetSystemAdmin(ctx, u.ID, true, ev); err != nil {
			return "", store.User{}, err
		}
	case errors.Is(err, store.ErrNotFound):
		u, err = st.CreateUser(ctx, store.User{ID: store.NewID(), Email: email, DisplayName: name, Status: store.UserActive,
			SystemAdmin: true, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			return "", store.User{}, err
		}
		ev.UserID = u.ID
		if err := st.AppendAudit(ctx, *ev); err != nil {
			return "", store.User{}, err
		}
	default:
		return "", store.User{}, err
	}
	tok, err := api.IssueAPIToken(ctx, st, u.ID, tokenName, 0, now)
	if err != nil {
		return "", store.User{}, err
	}
	return tok.Token, u, nil
}
