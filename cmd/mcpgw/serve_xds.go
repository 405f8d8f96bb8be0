package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"mcpgw/config"
	"mcpgw/xds"
)

func init() { registerComponent(config.ComponentXDS, runXDS) }

// xdsOptions maps the typed configuration onto xds.Options.
func xdsOptions(d Deps) (xds.Options, error) {
	c := d.Config
	host, ps, err := net.SplitHostPort(c.XDS.ListenerAddr)
	if err != nil {
		return xds.Options{}, fmt.Errorf("xds.listener_addr: %w", err)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return xds.Options{}, fmt.Errorf("xds.listener_addr: bad port")
	}
	oauth := c.XDS.OAuthServerAddr
	if oauth == "" {
		oauth = c.Listen.HTTP
		h, p, err := net.SplitHostPort(oauth)
		if err != nil {
			return xds.Options{}, fmt.Errorf("listen.http: %w", err)
		}
		if h == "" || h == "0.0.0.0" || h == "::" {
			// A wildcard bind is not an address Envoy can dial; same host
			// is the only guess that can work.
			h = "127.0.0.1"
		}
		if p == "0" {
			// An ephemeral port is not known here (tests, dev). Control-plane
			// routes then fail (503) until xds.oauth_server_addr is set.
			d.Logger.Warn("xds: listen.http uses port 0; set xds.oauth_server_addr so Envoy can reach oauthserver")
			p = "1"
		}
		oauth = net.JoinHostPort(h, p)
	}
	return xds.Options{
		Store:           d.Store,
		Allowlist:       c.Allowlist(),
		ListenerAddress: host,
		ListenerPort:    uint32(port),
		// Envoy is the edge exactly when oauthserver trusts its
		// x-envoy-external-address header: then the generated listener
		// must set it from the TCP peer (use_remote_address).
		UseRemoteAddress:   c.TrustedClientIP == config.ClientIPEnvoy,
		OAuthServerAddr:    oauth,
		PublicBaseURL:      c.PublicBaseURL,
		UpstreamCAFile:     c.XDS.UpstreamCAFile,
		ExtAuthzTimeout:    c.XDS.ExtAuthzTimeout.D(),
		StreamIdleTimeout:  c.XDS.StreamIdleTimeout.D(),
		ResyncInterval:     c.XDS.ResyncInterval.D(),
		MinResolveInterval: c.XDS.ResolveMin.D(),
		MaxResolveInterval: c.XDS.ResolveMax.D(),
		ResolveGrace:       c.XDS.ResolveGrace.D(),
		Logger:             d.Logger,
		Registerer:         d.Registry,
	}, nil
}

// runXDS serves ADS (and the gRPC health service, SERVING once the first
// snapshot is built, NOT_SERVING from the start of shutdown) on listen.xds
// and follows the store until ctx ends.
func runXDS(ctx context.Context, d Deps) error {
	opts, err := xdsOptions(d)
	if err != nil {
		return err
	}
	srv, err := xds.New(opts)
	if err != nil {
		return err
	}
	g := grpc.NewServer(xds.ServerOptions()...)
	srv.Register(g)
	hs := newHealthServer()
	healthpb.RegisterHealthServer(g, hs)
	svc := discoveryv3.AggregatedDiscoveryService_ServiceDesc.ServiceName
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return srv.Run(ctx) })
	eg.Go(func() error {
		select {
		case <-srv.Ready():
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
		case <-ctx.Done():
		}
		return nil
	})
	eg.Go(func() error {
		d.Logger.Info("xds: serving ADS", "addr", d.Listener.Addr().String(), "envoy_listener", d.Config.XDS.ListenerAddr, "oauth_cluster", opts.OAuthServerAddr)
		return serveGRPC(ctx, d.Listener, g, hs, d.Config.ShutdownTimeout.D())
	})
	return eg.Wait()
}
