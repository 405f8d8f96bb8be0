package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/store"
	"mcpgw/store/memory"
)

// TestBootstrapAdmin: the first run creates (or promotes) a system admin
// and returns a working token whose hash alone is stored; later runs are
// refused.
func TestBootstrapAdmin(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, existing := range []bool{false, true} {
		st := memory.New(memory.WithClock(func() time.Time { return now }))
		if existing {
			if _, err := st.CreateUser(ctx, store.User{ID: store.NewID(), Email: "root@example.com", Status: store.UserProvisional, CreatedAt: now, UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		tok, u, err := bootstrapAdmin(ctx, st, "root@example.com", "Root", "bootstrap", now)
		if err != nil {
			t.Fatalf("existing=%v: %v", existing, err)
		}
		if !u.SystemAdmin || u.Status != store.UserActive {
			t.Fatalf("existing=%v: user %+v", existing, u)
		}
		at, err := st.GetAPITokenByHash(ctx, secrets.Hash(tok), now)
		if err != nil || at.UserID != u.ID {
			t.Fatalf("existing=%v: token lookup %+v %v", existing, at, err)
		}
		evs, _, _ := st.QueryAudit(ctx, store.AuditFilter{Type: "user.bootstrap_admin"})
		if len(evs) != 1 || evs[0].UserID != u.ID {
			t.Fatalf("existing=%v: audit %+v", existing, evs)
		}
		if _, _, err := bootstrapAdmin(ctx, st, "other@example.com", "", "bootstrap", now); !errors.Is(err, errAdminExists) {
			t.Fatalf("existing=%v: second bootstrap: %v", existing, err)
		}
		st.Close()
	}
}
