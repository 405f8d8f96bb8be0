package api_test

import (
	"fmt"
	"net/http"
	"testing"

	"mcpgw/api"
	"mcpgw/store"
)

// BenchmarkAPI measures whole HTTP round trips through oauthserver's
// authentication and the API on each store: GET /available for a member
// assigned to 20 org configs, GET /configs/{id} (authorization included),
// and PATCH (a non-material update, one store transaction + audit).
//
//	go test -run '^$' -bench BenchmarkAPI -benchtime 2s ./api/
func BenchmarkAPI(b *testing.B) {
	for _, sk := range stores() {
		b.Run(sk.name, func(b *testing.B) {
			e := newEnv(b, sk.open(b), 0)
			owner := e.user("owner@example.com", false)
			member := e.user("member@example.com", false)
			var org api.OrgView
			e.must(http.StatusCreated, owner.token, "POST", "/api/v1/orgs", map[string]any{"name": "Bench"}).decode(e.t, &org)
			e.must(http.StatusCreated, owner.token, "POST", "/api/v1/orgs/"+org.ID+"/members", map[string]any{"user_id": member.user.ID, "role": "member"})
			var last api.ConfigView
			for i := 0; i < 20; i++ {
				last = e.createConfig(owner.token, orgConfigBody(org.ID, fmt.Sprintf("c%02d", i), store.MultiUser, store.AuthNone))
				e.must(http.StatusCreated, owner.token, "POST", "/api/v1/configs/"+last.ID+"/assignments", map[string]any{"user_id": member.user.ID})
			}
			b.Run("available", func(b *testing.B) {
				for b.Loop() {
					e.must(http.StatusOK, member.token, "GET", "/api/v1/available", nil)
				}
			})
			b.Run("get_config", func(b *testing.B) {
				for b.Loop() {
					e.must(http.StatusOK, member.token, "GET", "/api/v1/configs/"+last.ID, nil)
				}
			})
			b.Run("patch_config", func(b *testing.B) {
				i := 0
				for b.Loop() {
					i++
					e.must(http.StatusOK, owner.token, "PATCH", "/api/v1/configs/"+last.ID, map[string]any{"registry": map[string]int{"n": i}})
				}
			})
		})
	}
}
