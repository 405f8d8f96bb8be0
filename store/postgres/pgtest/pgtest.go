// Package pgtest gives tests a fresh, migrated, throwaway Postgres database.
//
// The first call in a process makes sure a migrated template database exists
// (named after a hash of the embedded migrations, so a schema change gets a
// new template), under a Postgres advisory lock so that parallel test
// binaries never build it twice at once. Every DSN call then runs CREATE
// DATABASE ... TEMPLATE, which copies files instead of replaying
// migrations, and drops the copy in t.Cleanup.
//
// The server comes from MCPGW_TEST_PG (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). A test whose
// Postgres is unreachable fails with a message saying so; it never skips
// (project rule: a missing prerequisite is a failing test).
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"mcpgw/migrations"
	"mcpgw/store/postgres"
)

// EnvDSN names the environment variable holding the admin DSN.
const EnvDSN = "MCPGW_TEST_PG"

// DefaultDSN is used when EnvDSN is unset.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// lockKey is the advisory lock guarding template creation (an arbitrary
// constant: "mcpgw" + "tmpl").
const lockKey int64 = 0x6d6370677774706c

var (
	tmplMu   sync.Mutex
	tmplName string // set once the template is known to exist
)

// BaseDSN returns the admin DSN tests connect to.
func BaseDSN() string {
	if v := os.Getenv(EnvDSN); v != "" {
		return v
	}
	return DefaultDSN
}

// DSN returns the DSN of a new database created from the migrated template.
// The database is dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := BaseDSN()
	tmpl, err := template(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := "mcpgw_t_" + randHex(8)
	admin, err := connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close(context.Background())
	if err := createFromTemplate(ctx, admin, name, tmpl); err != nil {
		t.Fatalf("pgtest: create database from template: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := connect(ctx, base)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return WithDatabase(base, name)
}

// Store opens a *postgres.Store on a fresh database (see DSN) and closes it
// when t ends.
func Store(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	dsn := DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatalf("pgtest: open store: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// WithDatabase returns dsn with its database replaced by name.
func WithDatabase(dsn, name string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		// keyword/value form: a later dbname wins.
		return dsn + " dbname=" + name
	}
	u.Path = "/" + name
	return u.String()
}

func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("Postgres unreachable at %s (set %s to a reachable server with CREATEDB rights; "+
			"start the local one with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`): %w",
			redact(dsn), EnvDSN, err)
	}
	return c, nil
}

// redact drops any password from a URL DSN for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(keyword/value DSN)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
		}
	}
	return u.String()
}

// template returns the name of the migrated template database, creating it
// if needed.
func template(ctx context.Context, base string) (string, error) {
	tmplMu.Lock()
	defer tmplMu.Unlock()
	if tmplName != "" {
		return tmplName, nil
	}
	name, err := templateName()
	if err != nil {
		return "", err
	}
	c, err := connect(ctx, base)
	if err != nil {
		return "", err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return "", fmt.Errorf("advisory lock: %w", err)
	}
	defer c.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey)

	sweep(ctx, c)

	// datistemplate doubles as the "fully migrated" marker: it is set only
	// after migrations succeeded, so a half-built leftover is rebuilt.
	var isTemplate bool
	err = c.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&isTemplate)
	switch {
	case err == nil && isTemplate:
		tmplName = name
		return name, nil
	case err == nil:
		if _, err := c.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop stale template: %w", err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("look up template: %w", err)
	}
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	if err := postgres.Migrate(ctx, WithDatabase(base, name)); err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := c.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH is_template true"); err != nil {
		return "", fmt.Errorf("mark template: %w", err)
	}
	tmplName = name
	return name, nil
}

// staleAfter is how old an unused test database must be before sweep drops
// it: far longer than any test binary runs.
const staleAfter = 6 * time.Hour

// sweep drops test databases left behind by killed test binaries (their
// t.Cleanup never ran): mcpgw_t_* databases older than staleAfter. A
// database somebody is still connected to is skipped (DROP without FORCE
// refuses), and errors are ignored: sweeping is housekeeping, not a test.
// It needs superuser (pg_stat_file); without it nothing is swept.
func sweep(ctx context.Context, c *pgx.Conn) {
	rows, err := c.Query(ctx, `SELECT datname FROM pg_database
		WHERE datname LIKE 'mcpgw\_t\_%' AND NOT datistemplate
		AND (pg_stat_file('base/' || oid || '/PG_VERSION', true)).modification < now() - $1::interval`,
		fmt.Sprintf("%d seconds", int(staleAfter.Seconds())))
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize())
	}
}

// templateName is mcpgw_tmpl_ plus a hash of the embedded migrations.
func templateName() (string, error) {
	h := sha256.New()
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return "mcpgw_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// createFromTemplate runs CREATE DATABASE name TEMPLATE tmpl, retrying while
// another session briefly holds the template (SQLSTATE 55006), until ctx
// ends.
func createFromTemplate(ctx context.Context, c *pgx.Conn, name, tmpl string) error {
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{tmpl}.Sanitize()
	backoff := 10 * time.Millisecond
	for {
		_, err := c.Exec(ctx, q)
		var pe *pgconn.PgError
		if err == nil || !errors.As(err, &pe) || pe.Code != "55006" {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
