package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"mcpgw/store"
	"mcpgw/store/postgres"
	"mcpgw/store/postgres/pgtest"
)

// explainSize is big enough that the planner would prefer a sequential
// scan for anything not served by an index.
var explainSize = seedSize{Users: 5000, Orgs: 50, OrgConfigs: 2000, UsersPerConfig: 10, Personal: 200}

// TestResolveRuntimePlanUsesIndexes seeds a database, then EXPLAINs the
// runtime statement both as a custom and as a generic plan (pgx prepares
// it; after five executions Postgres may switch to the generic plan) and
// requires every relation to be reached by an index scan (DESIGN §6 step 6:
// one round trip, primary-key lookups only).
func TestResolveRuntimePlanUsesIndexes(t *testing.T) {
	s := pgtest.Store(t)
	ctx := context.Background()
	if err := seed(ctx, s.Pool(), explainSize); err != nil {
		t.Fatal(err)
	}
	qs, err := seededQueries(ctx, s.Pool(), 50)
	if err != nil || len(qs) == 0 {
		t.Fatalf("no seeded queries (%d): %v", len(qs), err)
	}
	for _, q := range qs {
		st, err := s.ResolveRuntime(ctx, q)
		if err != nil || !st.OK() {
			t.Fatalf("seeded query %+v: reason %q err %v", q, st.Reason, err)
		}
	}
	q := qs[0]
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		t.Run(mode, func(t *testing.T) {
			if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "PREPARE rr AS "+postgres.ResolveSQL); err != nil {
				t.Fatal(err)
			}
			defer conn.Exec(ctx, "DEALLOCATE rr")
			var plan string
			if err := conn.QueryRow(ctx, fmt.Sprintf("EXPLAIN (FORMAT JSON) EXECUTE rr('%s', '%s', '%s')",
				q.ConfigID, q.UserID, q.InstanceID)).Scan(&plan); err != nil {
				t.Fatal(err)
			}
			var doc []struct{ Plan planNode }
			if err := json.Unmarshal([]byte(plan), &doc); err != nil {
				t.Fatal(err)
			}
			scans := map[string]string{}
			walk(doc[0].Plan, func(n planNode) {
				if n.Relation != "" {
					scans[n.Relation] = n.NodeType
				}
			})
			for _, rel := range []string{"configs", "users", "org_members", "assignments", "instances"} {
				nt, ok := scans[rel]
				if !ok {
					t.Errorf("%s not in plan: %s", rel, plan)
					continue
				}
				if !strings.HasPrefix(nt, "Index") {
					t.Errorf("%s reached by %q, want an index scan:\n%s", rel, nt, plan)
				}
			}
			if len(scans) != 5 {
				t.Errorf("plan touches %d relations, want 5: %v", len(scans), scans)
			}
		})
	}
	if _, err := conn.Exec(ctx, "RESET plan_cache_mode"); err != nil {
		t.Fatal(err)
	}
}

type planNode struct {
	NodeType string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Plans    []planNode `json:"Plans"`
}

func walk(n planNode, fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		walk(c, fn)
	}
}

// TestResolveRuntimeInvalidBeforeDB: bad input is ErrInvalid, even with the
// database gone (validated before any query).
func TestResolveRuntimeInvalidBeforeDB(t *testing.T) {
	s := pgtest.Store(t)
	s.Close()
	_, err := s.ResolveRuntime(context.Background(), store.RuntimeQuery{ConfigID: "nope"})
	if !errorsIs(err, store.ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	_, err = s.ResolveRuntime(context.Background(), store.RuntimeQuery{
		ConfigID: store.NewID(), RouteKey: strings.Repeat("a", 32), OwnerScope: store.ScopeUser, OwnerID: store.NewID(),
		UserID: store.NewID(), InstanceID: store.NewID(), ConfigVersion: 1, ExecutionContext: "personal"})
	if !errorsIs(err, store.ErrUnavailable) {
		t.Fatalf("closed pool: got %v, want ErrUnavailable", err)
	}
}

// TestUnavailable: an unreachable server is ErrUnavailable at Open.
func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	if !errorsIs(err, store.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}
