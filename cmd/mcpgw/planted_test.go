package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mcpgw/store/postgres/pgtest"
)

// TestNoPlantedSecretsInOutput runs `mcpgw dev` on Postgres with every
// configuration secret planted — the database password, the encryption
// key, the OIDC client secret — at debug log level, scrapes /metrics, shuts
// down, and also fails a start on purpose; none of the planted values may
// appear in stdout, stderr or the metrics (DESIGN §9).
func TestNoPlantedSecretsInOutput(t *testing.T) {
	const (
		dbPassword = "PLANTED-db-password-5f1c"
		encKey     = "PLANTED-encryption-key-32-bytes!" // exactly 32 bytes
		oidcSecret = "PLANTED-oidc-client-secret-9a7e"
	)
	if len(encKey) != 32 {
		t.Fatal("fixture key must be 32 bytes")
	}
	encB64 := base64.StdEncoding.EncodeToString([]byte(encKey))
	dsn := strings.Replace(pgtest.DSN(t), "postgres://postgres@", "postgres://postgres:"+dbPassword+"@", 1)
	if !strings.Contains(dsn, dbPassword) {
		t.Fatalf("could not plant a password in the test DSN")
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	env := []string{
		"MCPGW_DATABASE_URL=" + dsn, // trust auth ignores the password
		"MCPGW_ENCRYPTION_KEYS=k1:" + encB64,
		"MCPGW_OIDC_ISSUER=http://127.0.0.1:1",
		"MCPGW_OIDC_CLIENT_ID=mcpgw",
		"MCPGW_OIDC_CLIENT_SECRET=" + oidcSecret,
		"MCPGW_OIDC_REDIRECT_URL=http://127.0.0.1:1/login/callback",
		"MCPGW_STATIC_USERS=alice@example.com:" + string(hash),
		"MCPGW_LOG_LEVEL=debug",
	}
	forbidden := []string{dbPassword, encKey, encB64, oidcSecret}
	check := func(where, s string) {
		t.Helper()
		for _, f := range forbidden {
			if strings.Contains(s, f) {
				t.Fatalf("%s contains a planted secret %q:\n%s", where, f, s)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 16)}
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &app{stdout: io.MultiWriter(lw, &stdout), stderr: &stderr, environ: env},
			[]string{"dev", "--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0"})
	}()
	ready := waitLine(t, lw.lines, "mcpgw ready", 60*time.Second)
	if field(ready, "store") != "postgres" {
		t.Fatalf("ready: %s", ready)
	}
	resp, err := http.Get("http://" + field(ready, "metrics") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("/metrics", string(body))
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no shutdown")
	}
	check("stdout", stdout.String())
	check("stderr", stderr.String())
	if !strings.Contains(stderr.String(), "level=DEBUG") && !strings.Contains(stderr.String(), "level=INFO") {
		t.Fatalf("log capture did not work:\n%s", stderr.String())
	}

	// A failing start (one bad value) prints every problem but no secret.
	code, out, errs := runCmd(t, append(env, "MCPGW_PUBLIC_BASE_URL=ftp://x", "MCPGW_ENCRYPTION_KEYS=k1:"+encB64[:20]), "serve")
	if code != exitUsage {
		t.Fatalf("bad config: exit %d", code)
	}
	check("serve error stdout", out)
	check("serve error stderr", errs)
}

// lockedBuffer is a bytes.Buffer safe for the concurrent writes of a
// running server and the test's reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
