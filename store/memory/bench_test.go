package memory

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mcpgw/store"
)

// seedBench builds orgs × configsPerOrg org configs (multi_user, OAuth) and
// users spread over the orgs, each assigned to every config of its org with
// an instance and a grant: users × configsPerOrg instances.
func seedBench(b *testing.B, orgs, configsPerOrg, users int) (*Store, []store.RuntimeQuery) {
	b.Helper()
	ctx := context.Background()
	s := New()
	var qs []store.RuntimeQuery
	type cfg struct {
		c store.Config
		r store.Route
	}
	orgCfgs := make([][]cfg, orgs)
	orgIDs := make([]string, orgs)
	for o := 0; o < orgs; o++ {
		owner, err := s.CreateUser(ctx, store.User{ID: store.NewID(), Email: fmt.Sprintf("owner%d@example.test", o)})
		if err != nil {
			b.Fatal(err)
		}
		org, err := s.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: fmt.Sprintf("org%d", o)}, owner.ID, nil)
		if err != nil {
			b.Fatal(err)
		}
		orgIDs[o] = org.ID
		for i := 0; i < configsPerOrg; i++ {
			c, r, err := s.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeOrg, OwnerID: org.ID,
				Name: fmt.Sprintf("c%d", i), RemoteURL: "https://mcp.example.com/mcp", AuthMode: store.AuthOAuthDynamic,
				SharingMode: store.MultiUser}, store.NewID(), fmt.Sprintf("key%029d", o*configsPerOrg+i), nil)
			if err != nil {
				b.Fatal(err)
			}
			orgCfgs[o] = append(orgCfgs[o], cfg{c, r})
		}
	}
	for u := 0; u < users; u++ {
		o := u % orgs
		usr, err := s.CreateUser(ctx, store.User{ID: store.NewID(), Email: fmt.Sprintf("u%d@example.test", u)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.AddMember(ctx, store.Member{OrgID: orgIDs[o], UserID: usr.ID, Role: store.RoleMember}, nil); err != nil {
			b.Fatal(err)
		}
		for _, c := range orgCfgs[o] {
			if _, err := s.Assign(ctx, store.Assignment{ConfigID: c.c.ID, UserID: usr.ID}, nil); err != nil {
				b.Fatal(err)
			}
			in, _, err := s.GetOrCreateInstance(ctx, store.ScopeOrg, orgIDs[o], usr.ID, c.c.ID, store.NewID())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.PutGrant(ctx, store.Grant{InstanceID: in.ID, AccessToken: []byte("ct")}, -1, nil); err != nil {
				b.Fatal(err)
			}
			qs = append(qs, store.RuntimeQuery{ConfigID: c.c.ID, RouteKey: c.r.Key, OwnerScope: store.ScopeOrg, OwnerID: orgIDs[o],
				UserID: usr.ID, InstanceID: in.ID, ConfigVersion: 1, ExecutionContext: "org:" + orgIDs[o]})
		}
	}
	return s, qs
}

// BenchmarkResolveRuntime measures the runtime recheck of the embedded store
// on 100,000 instances (1,000 configs, 10,000 users), serial and parallel.
func BenchmarkResolveRuntime(b *testing.B) {
	s, qs := seedBench(b, 100, 10, 10000)
	defer s.Close()
	ctx := context.Background()
	run := func(b *testing.B, i int) {
		st, err := s.ResolveRuntime(ctx, qs[i%len(qs)])
		if err != nil || !st.OK() {
			b.Fatalf("ResolveRuntime: %v %s", err, st.Reason)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; b.Loop(); i++ {
			run(b, i*7919)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run(b, int(n.Add(7919)))
			}
		})
	})
}

// BenchmarkGetOrCreateInstance measures the lazy instance lookup that
// authorize runs, on the same dataset (every call finds the existing one).
func BenchmarkGetOrCreateInstance(b *testing.B) {
	s, qs := seedBench(b, 100, 10, 10000)
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; b.Loop(); i++ {
		q := qs[(i*7919)%len(qs)]
		if _, created, err := s.GetOrCreateInstance(ctx, q.OwnerScope, q.OwnerID, q.UserID, q.ConfigID, store.NewID()); err != nil || created {
			b.Fatalf("GetOrCreateInstance: created=%v err=%v", created, err)
		}
	}
}

// reportCPU reports process CPU time (user+system) per operation as
// "cpu-ns/op". On a shared machine wall-clock ns/op mostly measures the
// other tenants; CPU time per op measures this code.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
