package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"mcpgw/config"
	"mcpgw/domain/signing"
	"mcpgw/extauthz"
)

// TestServeAuthz runs `mcpgw dev --components=authz` in-process: the
// Authorization service answers a Check on the bound listener, and the
// gRPC health service reports SERVING for it. Stopping the process with
// health Watch streams open tells them NOT_SERVING, ends them and returns:
// the shutdown timeout is 10 minutes, so a graceful stop that waited for
// the streams would miss the one-minute bound below.
func TestServeAuthz(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lw := &lineWriter{lines: make(chan string, 16)}
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &app{stdout: lw, stderr: &errb}, []string{"dev", "--components=authz",
			"--listen-http=127.0.0.1:0", "--listen-authz=127.0.0.1:0", "--listen-xds=127.0.0.1:0", "--listen-metrics=127.0.0.1:0",
			"--shutdown-timeout=10m"})
	}()
	ready := waitLine(t, lw.lines, "mcpgw ready", 30*time.Second)
	addr := field(ready, "authz")
	if addr == "" {
		t.Fatalf("ready line without authz: %s\n%s", ready, errb.String())
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health not SERVING within 30s: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond) // polling for convergence
	}

	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/mcp-connect/nope", Headers: map[string]string{":path": "/mcp-connect/nope"},
		}},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 404 {
		t.Fatalf("Check of a non-route: %v, want a 404 denial", resp)
	}

	watches := []*healthWatch{
		openHealthWatch(t, conn, "", healthpb.HealthCheckResponse_SERVING),
		openHealthWatch(t, conn, authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING),
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve did not return within 1m of the stop (shutdown timeout 10m): open health Watch streams block the graceful stop\n%s", errb.String())
	}
	for _, w := range watches {
		w.assertDrained(t)
	}
}

// TestAuthzKeys: authz.jwks_url wins over key files (extauthz deployed apart
// from them), key files are used otherwise, and neither is a startup error.
func TestAuthzKeys(t *testing.T) {
	set, err := signing.NewSet(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(set.JWKS()) }))
	defer jwks.Close()
	logger := slog.New(slog.DiscardHandler)
	ctx := context.Background()

	cfg := config.Default()
	cfg.Authz.JWKSURL = jwks.URL
	keys, err := authzKeys(ctx, Deps{Config: cfg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := keys.(*extauthz.JWKS); !ok {
		t.Fatalf("jwks_url set: got %T, want *extauthz.JWKS", keys)
	}
	if _, err := keys.PublicKey(ctx, set.Current.ID); err != nil {
		t.Fatalf("key from JWKS: %v", err)
	}

	cfg = config.Default() // no keys at all
	if _, err := authzKeys(ctx, Deps{Config: cfg, Logger: logger}); err == nil {
		t.Fatal("no verification keys accepted")
	}
}

func mustKey(t *testing.T) signing.Key {
	t.Helper()
	k, err := signing.Generate(2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
