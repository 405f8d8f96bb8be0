package postgres_test

import (
	"context"
	"errors"
	"testing"

	"mcpgw/domain"
	"mcpgw/store"
	"mcpgw/store/postgres/pgtest"
)

// TestResolveRuntimeBatch: a batch answers exactly what ResolveRuntime
// answers for each query, in order, including denials, unknown configs and
// invalid queries.
func TestResolveRuntimeBatch(t *testing.T) {
	ctx := context.Background()
	st := pgtest.Store(t)
	user, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "batch@example.test", Status: store.UserActive})
	if err != nil {
		t.Fatal(err)
	}
	key := domain.NewRouteKey()
	cfg, _, err := st.CreateConfig(ctx, store.Config{ID: store.NewID(), OwnerScope: store.ScopeUser, OwnerID: user.ID,
		Name: "b", RemoteURL: "https://up.example.com/mcp", AuthMode: store.AuthNone, SharingMode: store.SingleUser,
		CreatedBy: user.ID}, store.NewID(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	inst, _, err := st.GetOrCreateInstance(ctx, store.ScopeUser, user.ID, user.ID, cfg.ID, store.NewID())
	if err != nil {
		t.Fatal(err)
	}
	ok := store.RuntimeQuery{ConfigID: cfg.ID, RouteKey: key, OwnerScope: store.ScopeUser, OwnerID: user.ID,
		UserID: user.ID, InstanceID: inst.ID, ConfigVersion: cfg.Version, ExecutionContext: "personal"}
	rotated, unknown, wrongVersion, invalid := ok, ok, ok, ok
	rotated.RouteKey = domain.NewRouteKey()
	unknown.ConfigID = store.NewID()
	wrongVersion.ConfigVersion = 7
	invalid.UserID = "not-a-uuid"
	qs := []store.RuntimeQuery{ok, rotated, unknown, ok, wrongVersion, invalid, ok}

	states, errs := st.ResolveRuntimeBatch(ctx, qs)
	if len(states) != len(qs) || len(errs) != len(qs) {
		t.Fatalf("got %d states, %d errors for %d queries", len(states), len(errs), len(qs))
	}
	for i, q := range qs {
		want, wantErr := st.ResolveRuntime(ctx, q)
		if (errs[i] == nil) != (wantErr == nil) || (wantErr != nil && !errors.Is(errs[i], store.ErrInvalid)) {
			t.Errorf("query %d: err %v, single gives %v", i, errs[i], wantErr)
			continue
		}
		got := states[i]
		got.Checked, want.Checked = want.Checked, got.Checked
		if got.Reason != want.Reason || got.InstanceID != want.InstanceID || got.Config.ID != want.Config.ID || got.Config.Version != want.Config.Version {
			t.Errorf("query %d: batch %+v, single %+v", i, states[i], want)
		}
	}
	if states[0].Reason != store.ReasonOK || states[1].Reason != store.ReasonRouteKeyMismatch || states[2].Reason != store.ReasonRouteNotFound || states[4].Reason != store.ReasonVersionMismatch {
		t.Errorf("unexpected reasons: %v %v %v %v", states[0].Reason, states[1].Reason, states[2].Reason, states[4].Reason)
	}

	// Database gone: every query gets an ErrUnavailable error.
	st.Close()
	_, errs = st.ResolveRuntimeBatch(ctx, []store.RuntimeQuery{ok, ok})
	for i, err := range errs {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("closed pool, query %d: %v, want ErrUnavailable", i, err)
		}
	}
}
