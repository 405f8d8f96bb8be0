package extauthz

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"mcpgw/store"
	"mcpgw/store/memory"
)

type leakyCreds struct{ secret string }

func (l leakyCreds) EnsureFresh(context.Context, store.RuntimeState) (string, error) {
	return "", errors.New("provider said: " + l.secret)
}

// TestPlantedSecrets drives allow and deny paths with planted secret
// values (client token, client cookie and API key, static header value,
// provider token, a provider error payload) and searches every output that
// must stay clean: logs (debug level), metrics, audit rows, denial bodies
// and denial headers (DESIGN §9).
func TestPlantedSecrets(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	_, _, kr := fixtureKeys(t)
	static := seedWorld(t, st, kr, store.ScopeOrg, store.AuthStaticHeaders) // static value "static-planted-secret"
	oauth := seedWorld(t, st, kr, store.ScopeUser, store.AuthOAuthDynamic)  // grant "upstream-planted-access"
	e := newEnv(t, st, nil)
	e2 := newEnv(t, st, func(o *Options) { o.Credentials = leakyCreds{secret: "provider-planted-payload"} })
	planted := []string{"static-planted-secret", "upstream-planted-access", "provider-planted-payload",
		"cookie-planted-value", "apikey-planted-value", "query-planted-token"}

	var denials []string
	send := func(e *env, r route, path, tok string, extra map[string]string) {
		req := fixture(t, "envoy_post_initialize.json", r, path, tok)
		for k, v := range extra {
			req.Attributes.Request.Http.Headers[k] = v
		}
		resp, err := e.client.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if d := resp.GetDeniedResponse(); d != nil {
			denials = append(denials, d.GetBody())
			for _, h := range d.GetHeaders() {
				denials = append(denials, h.GetHeader().GetValue())
			}
		}
	}
	clientHdrs := map[string]string{"cookie": "sid=cookie-planted-value", "x-api-key": "apikey-planted-value"}

	tokS := mint(t, e.key, static.r.claims(e.clock.Now()))
	tokO := mint(t, e.key, oauth.r.claims(e.clock.Now()))
	planted = append(planted, tokS, tokO)
	send(e, static.r, "", tokS, clientHdrs)                                               // allow, static
	send(e, oauth.r, "", tokO, clientHdrs)                                                // allow, oauth
	send(e, static.r, static.r.ref.Path()+"?access_token=query-planted-token", tokS, nil) // deny, token in query
	send(e, static.r, "", tokS+"x", clientHdrs)                                           // deny, bad signature
	send(e, static.r, "", tokS, map[string]string{"origin": "https://evil.example"})      // deny, origin
	send(e2, oauth.r, "", tokO, clientHdrs)                                               // deny, leaky provider error
	_, err := st.SetUserStatus(ctx, static.user.ID, store.UserBlocked, nil)
	must(t, err)
	send(e, static.r, "", tokS, clientHdrs) // deny, ineligible
	e.clock.Advance(20 * time.Minute)
	send(e, oauth.r, "", tokO, clientHdrs) // deny, expired

	e.srv.Close()
	e2.srv.Close()
	rows, _, err := st.QueryAudit(ctx, store.AuditFilter{Type: "runtime.usage", Limit: 1000})
	must(t, err)
	if len(rows) == 0 {
		t.Fatal("no usage audit rows written")
	}
	var audit strings.Builder
	for _, r := range rows {
		audit.WriteString(r.Reason + " " + r.Outcome + " " + r.ClientID + " ")
		for k, v := range r.Metadata {
			audit.WriteString(k + "=" + v + " ")
		}
	}
	var metrics bytes.Buffer
	for _, reg := range []*env{e, e2} {
		mfs, err := reg.reg.Gather()
		must(t, err)
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&metrics, mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	outputs := map[string]string{
		"logs":    e.logs.String() + e2.logs.String(),
		"metrics": metrics.String(),
		"audit":   audit.String(),
		"denials": strings.Join(denials, "\n"),
	}
	if len(denials) == 0 || !strings.Contains(outputs["logs"], "denied") {
		t.Fatalf("test did not exercise deny paths: denials=%d", len(denials))
	}
	for where, out := range outputs {
		for _, p := range planted {
			if strings.Contains(out, p) {
				t.Errorf("%s contain planted secret %.24q...", where, p)
			}
		}
	}
}
