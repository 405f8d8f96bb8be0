package storetest

import (
	"slices"
	"testing"
	"time"

	"mcpgw/store"
)

// testAudit covers AppendAudit and QueryAudit (DESIGN §9): filters, newest
// first, and the Before cursor.
func testAudit(t *testing.T, newStore NewStore) {
	x := open(t, newStore)
	actor, subject, other := store.NewID(), store.NewID(), store.NewID()
	cfgA, cfgB := store.NewID(), store.NewID()
	orgID := store.NewID()
	// 30 events, one per minute; IDs ascend with time.
	var all []store.AuditEvent
	for i := range 30 {
		ev := store.AuditEvent{
			Time:        at(time.Duration(i) * time.Minute),
			Type:        "runtime.usage",
			Outcome:     "success",
			ActorUserID: actor,
			OwnerScope:  store.ScopeUser,
			OwnerID:     actor,
			ConfigID:    cfgA,
			Metadata:    map[string]string{"i": string(rune('A' + i))},
		}
		switch {
		case i%3 == 1:
			ev.Type = "config.update"
			ev.ConfigID = cfgB
		case i%3 == 2:
			ev.ActorUserID = other
			ev.UserID = subject
			ev.OwnerScope, ev.OwnerID = store.ScopeOrg, orgID
			ev.Outcome = "denied"
			ev.Reason = string(store.ReasonNotAssigned)
			ev.ClientID = "dcr:client-1"
		}
		all = append(all, ev)
	}
	// Append in three batches (one transaction each).
	wantErr(t, "AppendAudit", x.s.AppendAudit(x.ctx, all[:10]...), nil)
	wantErr(t, "AppendAudit", x.s.AppendAudit(x.ctx, all[10:11]...), nil)
	wantErr(t, "AppendAudit", x.s.AppendAudit(x.ctx, all[11:]...), nil)
	wantErr(t, "AppendAudit(nothing)", x.s.AppendAudit(x.ctx), nil)

	// index of an event by its metadata marker.
	idx := func(ev store.AuditEvent) int { return int([]rune(ev.Metadata["i"])[0] - 'A') }
	expect := func(pred func(i int, ev store.AuditEvent) bool) []int {
		var out []int
		for i := len(all) - 1; i >= 0; i-- {
			if pred(i, all[i]) {
				out = append(out, i)
			}
		}
		return out
	}

	t.Run("RoundTrip", func(t *testing.T) {
		evs, _, err := x.s.QueryAudit(x.ctx, store.AuditFilter{Limit: 1000})
		wantErr(t, "QueryAudit", err, nil)
		if len(evs) != 30 {
			t.Fatalf("QueryAudit = %d events, want 30", len(evs))
		}
		ids := map[int64]bool{}
		for _, ev := range evs {
			if ev.ID <= 0 || ids[ev.ID] {
				t.Fatalf("bad or duplicate id %d", ev.ID)
			}
			ids[ev.ID] = true
			w := all[idx(ev)]
			if !ev.Time.Equal(w.Time) || ev.Type != w.Type || ev.Outcome != w.Outcome || ev.ActorUserID != w.ActorUserID ||
				ev.OwnerScope != w.OwnerScope || ev.OwnerID != w.OwnerID || ev.ConfigID != w.ConfigID || ev.UserID != w.UserID ||
				ev.ClientID != w.ClientID || ev.Reason != w.Reason || !sameMap(ev.Metadata, w.Metadata) {
				t.Fatalf("event %d = %+v, want %+v", idx(ev), ev, w)
			}
		}
	})

	cases := []struct {
		name string
		f    store.AuditFilter
		want []int
	}{
		{"All", store.AuditFilter{}, expect(func(int, store.AuditEvent) bool { return true })},
		{"Type", store.AuditFilter{Type: "config.update"}, expect(func(i int, _ store.AuditEvent) bool { return i%3 == 1 })},
		{"Config", store.AuditFilter{ConfigID: cfgB}, expect(func(i int, _ store.AuditEvent) bool { return i%3 == 1 })},
		{"Owner", store.AuditFilter{OwnerScope: store.ScopeOrg, OwnerID: orgID}, expect(func(i int, _ store.AuditEvent) bool { return i%3 == 2 })},
		{"OwnerScopeOnly", store.AuditFilter{OwnerScope: store.ScopeUser}, expect(func(i int, _ store.AuditEvent) bool { return i%3 != 2 })},
		{"UserMatchesActor", store.AuditFilter{UserID: actor}, expect(func(i int, _ store.AuditEvent) bool { return i%3 != 2 })},
		{"UserMatchesSubject", store.AuditFilter{UserID: subject}, expect(func(i int, _ store.AuditEvent) bool { return i%3 == 2 })},
		{"UserMatchesOtherActor", store.AuditFilter{UserID: other}, expect(func(i int, _ store.AuditEvent) bool { return i%3 == 2 })},
		{"UserUnknown", store.AuditFilter{UserID: store.NewID()}, nil},
		{"SinceUntil", store.AuditFilter{Since: at(9*time.Minute + 30*time.Second), Until: at(14*time.Minute + 30*time.Second)}, expect(func(i int, _ store.AuditEvent) bool { return i >= 10 && i <= 14 })},
		{"Since", store.AuditFilter{Since: at(24*time.Minute + 30*time.Second)}, expect(func(i int, _ store.AuditEvent) bool { return i >= 25 })},
		{"Combined", store.AuditFilter{Type: "runtime.usage", UserID: actor, Until: at(10*time.Minute + 30*time.Second)}, expect(func(i int, _ store.AuditEvent) bool { return i%3 == 0 && i <= 10 })},
		{"Limit", store.AuditFilter{Limit: 4}, expect(func(i int, _ store.AuditEvent) bool { return i >= 26 })},
	}
	for _, tc := range cases {
		t.Run("Filter"+tc.name, func(t *testing.T) {
			evs, _, err := x.s.QueryAudit(x.ctx, tc.f)
			wantErr(t, "QueryAudit", err, nil)
			var got []int
			for _, ev := range evs {
				got = append(got, idx(ev))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("QueryAudit(%+v) = %v, want newest first %v", tc.f, got, tc.want)
			}
		})
	}

	t.Run("Pagination", func(t *testing.T) {
		for _, limit := range []int{7, 10, 30} {
			var got []int
			f := store.AuditFilter{Limit: limit}
			pages := 0
			for {
				evs, next, err := x.s.QueryAudit(x.ctx, f)
				wantErr(t, "QueryAudit", err, nil)
				pages++
				if pages > 10 {
					t.Fatalf("limit %d: pagination does not terminate", limit)
				}
				if len(evs) > limit {
					t.Fatalf("limit %d: page of %d", limit, len(evs))
				}
				if pages == 1 && limit < 30 && (len(evs) != limit || next == 0) {
					t.Fatalf("limit %d: first page %d events, next %d", limit, len(evs), next)
				}
				for _, ev := range evs {
					got = append(got, idx(ev))
				}
				if next == 0 {
					break
				}
				if len(evs) > 0 && next > evs[len(evs)-1].ID {
					t.Fatalf("cursor %d is after the last returned id %d", next, evs[len(evs)-1].ID)
				}
				f.Before = next
			}
			want := expect(func(int, store.AuditEvent) bool { return true })
			if !slices.Equal(got, want) {
				t.Fatalf("limit %d: paged = %v, want %v", limit, got, want)
			}
		}
		// Filtered pagination.
		var got []int
		f := store.AuditFilter{Type: "config.update", Limit: 3}
		for range 10 {
			evs, next, err := x.s.QueryAudit(x.ctx, f)
			wantErr(t, "QueryAudit", err, nil)
			for _, ev := range evs {
				got = append(got, idx(ev))
			}
			if next == 0 {
				break
			}
			f.Before = next
		}
		if want := expect(func(i int, _ store.AuditEvent) bool { return i%3 == 1 }); !slices.Equal(got, want) {
			t.Fatalf("filtered paging = %v, want %v", got, want)
		}
	})

	t.Run("TimeFilledWhenZero", func(t *testing.T) {
		y := open(t, newStore)
		wantErr(t, "AppendAudit", y.s.AppendAudit(y.ctx, store.AuditEvent{Type: "x.test", Outcome: "success"}), nil)
		evs, _, err := y.s.QueryAudit(y.ctx, store.AuditFilter{})
		wantErr(t, "QueryAudit", err, nil)
		if len(evs) != 1 || evs[0].Time.IsZero() {
			t.Fatalf("events = %+v, want one with the time filled", evs)
		}
	})

	t.Run("AppendAtomic", func(t *testing.T) {
		y := open(t, newStore)
		good := store.AuditEvent{Type: "x.test", Outcome: "success", Time: t0}
		bad := store.AuditEvent{Type: "", Outcome: "success", Time: t0}
		wantErr(t, "AppendAudit(one invalid)", y.s.AppendAudit(y.ctx, good, bad), store.ErrInvalid)
		evs, _, _ := y.s.QueryAudit(y.ctx, store.AuditFilter{})
		if len(evs) != 0 {
			t.Fatalf("a batch with an invalid event wrote %d events", len(evs))
		}
	})
}
