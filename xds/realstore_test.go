package xds

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"mcpgw/domain"
	"mcpgw/store"
	"mcpgw/store/memory"
	"mcpgw/store/postgres/pgtest"
)

// TestRealStores runs xds on the embedded memory store and on Postgres
// (LISTEN/NOTIFY): create a config, rotate its key, disable it, point it at
// a private address — each reaches the snapshot, and the rejection audit
// event is accepted by the real store.
func TestRealStores(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"memory", func(t *testing.T) store.Store { return memory.New() }},
		{"postgres", func(t *testing.T) store.Store { return pgtest.Store(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.open(t)
			ctx := context.Background()
			u, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "u@example.test", Status: store.UserActive,
				CreatedAt: time.Now(), UpdatedAt: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			res := newFakeResolver()
			res.set("good.example", time.Minute, "1.1.1.1")
			res.set("bad.example", time.Minute, "10.0.0.1")
			s, err := New(Options{Store: st, Resolver: res, OAuthServerAddr: "127.0.0.1:1",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Run(rctx) }()
			defer func() { cancel(); <-done }()
			<-s.Ready()

			c, r, err := st.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: u.ID,
				Name: "c", RemoteURL: "https://good.example/mcp", AuthMode: store.AuthNone, SharingMode: store.SingleUser,
				CreatedAt: time.Now(), UpdatedAt: time.Now()}, store.NewID(), domain.NewRouteKey(), nil)
			if err != nil {
				t.Fatal(err)
			}
			rc := store.RoutableConfig{Config: c, Route: r}
			waitFor(t, "new config routed", func() bool { return hasPath(currentRoutes(t, s), routePath(rc)) })
			// The new host is resolved off the build loop; its endpoints
			// follow as an EDS update.
			waitFor(t, "endpoints of the new config", func() bool {
				got := snapshotEndpoints(t, s, c.ID)
				return len(got) == 1 && got[0] == netip.MustParseAddr("1.1.1.1").String()
			})

			key := domain.NewRouteKey()
			if _, err := st.RotateRoute(ctx, c.ID, store.NewID(), key, nil); err != nil {
				t.Fatal(err)
			}
			old := routePath(rc)
			rc.Route.Key = key
			waitFor(t, "rotation", func() bool {
				rt := currentRoutes(t, s)
				return hasPath(rt, routePath(rc)) && !hasPath(rt, old)
			})

			if _, _, err := st.UpdateConfig(ctx, c.ID, func(c *store.Config) error {
				c.RemoteURL = "https://bad.example/mcp"
				return nil
			}, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "private upstream loses endpoints", func() bool {
				_, ok := s.Current().GetResources(resourcev3.EndpointType)[clusterName(c.ID)]
				return ok && len(snapshotEndpoints(t, s, c.ID)) == 0
			})
			waitFor(t, "audit event stored", func() bool {
				evs, _, err := st.QueryAudit(ctx, store.AuditFilter{ConfigID: c.ID, Type: "xds.upstream_rejected"})
				return err == nil && len(evs) == 1 && evs[0].Reason == problemNonPublic
			})

			// A second replica on the same database serves identical
			// versions (an Envoy may fail over between replicas).
			s2, err := New(Options{Store: st, Resolver: res, OAuthServerAddr: "127.0.0.1:1",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			rctx2, cancel2 := context.WithCancel(ctx)
			done2 := make(chan struct{})
			go func() { defer close(done2); _ = s2.Run(rctx2) }()
			defer func() { cancel2(); <-done2 }()
			<-s2.Ready()
			for _, typeURL := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
				waitFor(t, "replica versions agree", func() bool {
					return s.Current().GetVersion(typeURL) == s2.Current().GetVersion(typeURL)
				})
			}

			if _, err := st.SetConfigStatus(ctx, c.ID, store.ConfigDisabled, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "disabled config removed", func() bool { return !hasPath(currentRoutes(t, s), routePath(rc)) })
		})
	}
}
