package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpgw/store/postgres/pgtest"
)

// emptyDB creates an empty (unmigrated) database and drops it at the end.
func emptyDB(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := pgtest.BaseDSN()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("Postgres is required for this test and is unreachable at %s: %v (run ./scripts/test, which starts it)", pgtest.BaseDSN(), err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name := "mcpgw_cmdtest_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return pgtest.WithDatabase(base, name)
}

func TestMigrate(t *testing.T) {
	dsn := emptyDB(t)
	env := []string{"MCPGW_DATABASE_URL=" + dsn}

	code, out, errs := runCmd(t, env, "migrate", "status")
	if code != exitOK || !strings.Contains(out, "pending") || strings.Contains(out, "applied") {
		t.Fatalf("status before: %d\n%s\n%s", code, out, errs)
	}
	// serve refuses an unmigrated database with a clear message.
	code, _, errs = runCmd(t, append(prodEnvNoKeys(), env...), "serve", "--components=xds", "--listen-xds=127.0.0.1:0", "--listen-metrics=")
	if code != exitError || !strings.Contains(errs, "mcpgw migrate up") {
		t.Fatalf("serve on an unmigrated database: %d %s", code, errs)
	}

	code, out, errs = runCmd(t, nil, "migrate", "up", "--database-url", dsn)
	if code != exitOK || !strings.Contains(out, "migrations applied") {
		t.Fatalf("up: %d %s %s", code, out, errs)
	}
	code, out, _ = runCmd(t, env, "migrate", "status")
	if code != exitOK || strings.Contains(out, "pending") || !strings.Contains(out, "applied") {
		t.Fatalf("status after:\n%s", out)
	}
	// serve now starts on it.
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 16)}
	var errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &app{stdout: lw, stderr: &errb, environ: append(prodEnvNoKeys(), env...)},
			[]string{"serve", "--components=xds", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0"})
	}()
	if ready := waitLine(t, lw.lines, "mcpgw ready", 60*time.Second); field(ready, "store") != "postgres" || field(ready, "mode") != "serve" {
		t.Fatalf("ready: %s", ready)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("serve exit %d:\n%s", code, errb.String())
	}

	// Idempotent.
	if code, _, errs := runCmd(t, env, "migrate", "up"); code != exitOK {
		t.Fatalf("second up: %s", errs)
	}
	// A pgtest database (already migrated) reports nothing pending.
	if code, out, _ := runCmd(t, []string{"MCPGW_DATABASE_URL=" + pgtest.DSN(t)}, "migrate", "status"); code != exitOK || strings.Contains(out, "pending") {
		t.Fatalf("pgtest status:\n%s", out)
	}
}

func TestMigrateErrors(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"no action", []string{"MCPGW_DATABASE_URL=postgres://x@127.0.0.1/x"}, []string{"migrate"}, exitUsage, "migrate up"},
		{"bad action", []string{"MCPGW_DATABASE_URL=postgres://x@127.0.0.1/x"}, []string{"migrate", "down"}, exitUsage, "migrate up"},
		{"no database", nil, []string{"migrate", "up"}, exitUsage, "MCPGW_DATABASE_URL"},
		{"extra args", []string{"MCPGW_DATABASE_URL=postgres://x@127.0.0.1/x"}, []string{"migrate", "up", "now"}, exitUsage, "unexpected"},
		{"unreachable", nil, []string{"migrate", "up", "--database-url", "postgres://postgres:hunter2@127.0.0.1:1/x?connect_timeout=2"}, exitError, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runCmd(t, c.env, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("code %d stderr %q", code, errs)
			}
			if strings.Contains(errs, "hunter2") {
				t.Fatalf("password leaked: %s", errs)
			}
		})
	}
}
