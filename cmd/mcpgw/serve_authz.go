package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"mcpgw/config"
	"mcpgw/extauthz"
)

func init() { registerComponent(config.ComponentAuthz, runAuthz) }

// authzKeys picks where gateway-JWT verification keys come from: the
// oauthserver's JWKS URL when configured (extauthz deployed apart from the
// key files), else the local signing key files.
func authzKeys(ctx context.Context, d Deps) (extauthz.Keys, error) {
	c := d.Config
	if c.Authz.JWKSURL != "" {
		j, err := extauthz.NewJWKS(extauthz.JWKSOptions{URL: c.Authz.JWKSURL})
		if err != nil {
			return nil, err
		}
		// Fetch once now so a wrong URL shows up in the startup log; keep
		// running if the oauthserver is not up yet (first Check retries).
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := j.Refresh(rctx); err != nil {
			d.Logger.Warn("authz: initial JWKS fetch failed; will retry on first use", "url", c.Authz.JWKSURL, "err", err)
		}
		return j, nil
	}
	if set := c.SigningKeys(); set != nil {
		return extauthz.StaticKeys(set), nil
	}
	return nil, errors.New("no verification keys: set authz.jwks_url or keys.signing_key_file")
}

// runAuthz serves envoy.service.auth.v3.Authorization and the gRPC health
// service on listen.authz. Health reports NOT_SERVING while the database
// is unreachable, so a load balancer can drain a replica that would only
// answer Unavailable.
func runAuthz(ctx context.Context, d Deps) error {
	c := d.Config
	keys, err := authzKeys(ctx, d)
	if err != nil {
		return err
	}
	if c.KeyRing() == nil {
		return errors.New("no encryption key ring: set keys.encryption_keys (see `mcpgw keygen`)")
	}
	issuer := c.Issuer
	if issuer == "" {
		issuer = c.PublicBaseURL
	}
	// The provider refresher (DESIGN §6 step 7, issue 4): lazy refresh
	// with at most one upstream refresh per instance across replicas.
	creds, err := authzCredentials(d)
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	srv, err := extauthz.New(extauthz.Options{
		Store:          d.Store,
		Keys:           keys,
		Issuer:         strings.TrimRight(issuer, "/"),
		PublicBaseURL:  c.PublicBaseURL,
		AllowedOrigins: c.AllowedOrigins,
		KeyRing:        c.KeyRing(),
		Registry:       d.Registry,
		Logger:         d.Logger,
		Leeway:         c.Authz.Leeway.D(),
		CredentialSkew: c.Authz.RefreshSkew.D(),
		// Coalesce rechecks in flight at the same moment into one round
		// trip (store/postgres implements it), one batch per pooled
		// connection (pgxpool's default size, max(4, NumCPU)). Every
		// request still gets its own fresh read; see extauthz/batch.go.
		BatchRecheck: max(4, runtime.NumCPU()),
		Credentials:  creds,
	})
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	defer srv.Close()

	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(1<<20), // headers only: bodies never reach Check
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	srv.Register(g)
	hs := newHealthServer()
	healthpb.RegisterHealthServer(g, hs)
	go watchHealth(ctx, d, hs.Server)

	d.Logger.Info("authz: serving", "addr", d.Listener.Addr().String(), "keys", keySource(c))
	return serveGRPC(ctx, d.Listener, g, hs, c.ShutdownTimeout.D())
}

func keySource(c *config.Config) string {
	if c.Authz.JWKSURL != "" {
		return "jwks"
	}
	return "files"
}

// watchHealth mirrors database reachability into the health service for
// the overall server ("") and the Authorization service until ctx ends.
// Shutdown is serveGRPC's (healthServer.drain): it marks both NOT_SERVING
// for good, so a status set here afterwards is ignored.
func watchHealth(ctx context.Context, d Deps, hs *health.Server) {
	svc := authv3.Authorization_ServiceDesc.ServiceName
	set := func(s healthpb.HealthCheckResponse_ServingStatus) {
		hs.SetServingStatus("", s)
		hs.SetServingStatus(svc, s)
	}
	last := healthpb.HealthCheckResponse_UNKNOWN
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := d.Store.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			// Stopping, not a database outage: nothing to report.
			return
		}
		s := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			s = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if s != last {
			if err != nil {
				d.Logger.Warn("authz: database unreachable; health NOT_SERVING", "err", err)
			}
			set(s)
			last = s
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
