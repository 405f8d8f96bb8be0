package storetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"mcpgw/domain"
	"mcpgw/store"
)

// captureHandler is a slog.Handler that keeps every record, attributes and
// groups included, as text.
type captureHandler struct {
	mu    *sync.Mutex
	buf   *bytes.Buffer
	attrs []slog.Attr
	group string
}

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.WriteString(r.Level.String() + " " + h.group + " " + r.Message)
	for _, a := range h.attrs {
		h.buf.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		h.buf.WriteString(" " + a.String())
		return true
	})
	h.buf.WriteString("\n")
	return nil
}

func (h captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}

func (h captureHandler) WithGroup(name string) slog.Handler {
	h.group += name + "."
	return h
}

// plantedForms returns the ways a planted secret could leak: the raw value
// and the hex and base64 encodings of its bytes.
func plantedForms(b []byte) []string {
	return []string{
		string(b),
		hex.EncodeToString(b),
		base64.StdEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		`\x` + hex.EncodeToString(b), // Postgres bytea text form
	}
}

// testPlantedSecrets plants known secret-looking values in every ciphertext
// and hash column, drives success and failure paths, and proves none of them
// appears in anything the store logs (slog default handler and the log
// package) or in any error it returns (DESIGN §9).
func testPlantedSecrets(t *testing.T, newStore NewStore) {
	var mu sync.Mutex
	var logs bytes.Buffer
	prev := slog.Default()
	prevFlags, prevPrefix, prevOut := log.Flags(), log.Prefix(), log.Writer()
	slog.SetDefault(slog.New(captureHandler{mu: &mu, buf: &logs}))
	t.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetFlags(prevFlags)
		log.SetPrefix(prevPrefix)
		log.SetOutput(prevOut)
	})

	x := open(t, newStore)
	secret := func(label string) []byte { return []byte("PLANTED-SECRET-" + label + "-7f3a9c") }
	var planted [][]byte
	plantHash := func(label string) []byte {
		h := hash("planted-" + label)
		planted = append(planted, h)
		return h
	}
	plantCipher := func(label string) []byte {
		c := secret(label)
		planted = append(planted, c)
		return c
	}
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	u := x.user()
	c := newConfig(store.ScopeUser, u.ID, store.AuthStaticHeaders, store.SingleUser)
	c.StaticHeaders = plantCipher("static-headers")
	// Route keys are not secrets (DESIGN §2: knowing a route grants
	// nothing), so the key is an ordinary one.
	routeKey := domain.NewRouteKey()
	c, _, err := x.s.CreateConfig(x.ctx, c, store.NewID(), routeKey, nil)
	wantErr(t, "CreateConfig", err, nil)
	in := x.instance(c, u.ID)
	g := newGrant(in.ID, "x")
	g.AccessToken, g.RefreshToken = plantCipher("access"), plantCipher("refresh")
	g1, err := x.s.PutGrant(x.ctx, g, -1, nil)
	wantErr(t, "PutGrant", err, nil)
	_, err = x.s.PutGrant(x.ctx, g, g1.Version-1, nil) // stale
	keep(err)
	_, err = x.s.LockGrant(x.ctx, in.ID, func(cur *store.Grant) (*store.Grant, error) {
		return nil, errors.New("refresh failed upstream")
	})
	keep(err)
	keep(x.s.PutProviderRegistration(x.ctx, store.ProviderRegistration{ConfigID: c.ID, ConfigVersion: 1, Ciphertext: plantCipher("registration"), CreatedAt: t0}))
	keep(x.s.PutProviderRegistration(x.ctx, store.ProviderRegistration{ConfigID: c.ID, ConfigVersion: 9, Ciphertext: plantCipher("registration-stale"), CreatedAt: t0}))

	// Pending state: consume twice, consume expired.
	p := pendingState("planted", u.ID, c, in.ID, at(time.Minute))
	p.StateHash, p.Ciphertext = plantHash("state"), plantCipher("pending")
	keep(x.s.CreatePendingState(x.ctx, p))
	keep(x.s.CreatePendingState(x.ctx, p)) // duplicate
	_, err = x.s.ConsumePendingState(x.ctx, p.StateHash, t0)
	keep(err)
	_, err = x.s.ConsumePendingState(x.ctx, p.StateHash, t0)
	keep(err)

	// API tokens and sessions.
	tok := store.APIToken{ID: store.NewID(), UserID: u.ID, Name: "t", Hash: plantHash("api"), CreatedAt: t0, ExpiresAt: ptime(at(time.Minute))}
	_, err = x.s.CreateAPIToken(x.ctx, tok)
	keep(err)
	tok.ID = store.NewID()
	_, err = x.s.CreateAPIToken(x.ctx, tok) // duplicate hash
	keep(err)
	_, err = x.s.GetAPITokenByHash(x.ctx, tok.Hash, at(time.Hour)) // expired
	keep(err)
	_, err = x.s.GetAPITokenByHash(x.ctx, plantHash("api-unknown"), t0)
	keep(err)
	sess := store.Session{IDHash: plantHash("session"), UserID: u.ID, CSRFHash: plantHash("csrf"), CreatedAt: t0, ExpiresAt: at(time.Minute)}
	keep(x.s.CreateSession(x.ctx, sess))
	keep(x.s.CreateSession(x.ctx, sess))
	_, err = x.s.GetSession(x.ctx, sess.IDHash, at(time.Hour))
	keep(err)

	// OAuth artifacts.
	w := oworld{client: x.client(), user: u, cfg: c, route: store.Route{Key: routeKey}, inst: in}
	cl := w.client
	cl.ID = "dcr:" + store.NewID()
	cl.SecretHash, cl.RegistrationTokenHash = plantHash("client-secret"), plantHash("reg-token")
	_, err = x.s.CreateClient(x.ctx, cl)
	keep(err)
	_, err = x.s.CreateClient(x.ctx, cl)
	keep(err)
	code := w.authCode("planted", at(time.Minute))
	code.Hash = plantHash("code")
	keep(x.s.CreateAuthCode(x.ctx, code))
	keep(x.s.CreateAuthCode(x.ctx, code))
	for range 2 {
		_, err = x.s.ConsumeAuthCode(x.ctx, code.Hash, t0)
		keep(err)
	}
	_, err = x.s.ConsumeAuthCode(x.ctx, plantHash("code-unknown"), t0)
	keep(err)
	rt := w.refreshToken("planted", store.NewID(), at(time.Hour))
	rt.Hash = plantHash("refresh-1")
	keep(x.s.CreateRefreshToken(x.ctx, rt))
	next := w.refreshToken("planted-next", rt.FamilyID, at(2*time.Hour))
	next.Hash = plantHash("refresh-2")
	for range 2 {
		_, err = x.s.RotateRefreshToken(x.ctx, rt.Hash, next, t0)
		keep(err)
	}
	_, err = x.s.RevokeFamily(x.ctx, rt.FamilyID, t0)
	keep(err)
	_, err = x.s.RotateRefreshToken(x.ctx, next.Hash, rt, t0)
	keep(err)
	req := w.authRequest(at(time.Hour))
	keep(x.s.CreateAuthRequest(x.ctx, req))
	ct := w.consentTicket("planted", req.ID, at(time.Minute))
	ct.Hash = plantHash("consent")
	keep(x.s.CreateConsentTicket(x.ctx, ct))
	for range 2 {
		_, err = x.s.ConsumeConsentTicket(x.ctx, ct.Hash, t0)
		keep(err)
	}
	// Invalid input carrying secrets: oversize ciphertext and a bad hash
	// length whose bytes are the secret.
	bigSecret := bytes.Repeat(secret("oversize"), 8000)
	_, err = x.s.PutGrant(x.ctx, store.Grant{InstanceID: in.ID, AccessToken: bigSecret, TokenType: "Bearer"}, -1, nil)
	keep(err)
	shortHash := secret("short-hash")
	_, err = x.s.GetAPITokenByHash(x.ctx, shortHash, t0)
	keep(err)
	_, err = x.s.ConsumeAuthCode(x.ctx, shortHash, t0)
	keep(err)
	planted = append(planted, shortHash)
	// Runtime with a planted-looking (valid) route key mismatch.
	rs, err := x.s.ResolveRuntime(x.ctx, store.RuntimeQuery{ConfigID: c.ID, RouteKey: domain.NewRouteKey(), OwnerScope: c.OwnerScope,
		OwnerID: c.OwnerID, UserID: u.ID, InstanceID: in.ID, ConfigVersion: c.Version, ExecutionContext: "personal"})
	keep(err)
	if rs.Reason != store.ReasonRouteKeyMismatch {
		t.Errorf("ResolveRuntime reason = %q, want %q", rs.Reason, store.ReasonRouteKeyMismatch)
	}
	// A successful runtime check too (it returns the grant, never logs it).
	rs, err = x.s.ResolveRuntime(x.ctx, store.RuntimeQuery{ConfigID: c.ID, RouteKey: routeKey, OwnerScope: c.OwnerScope,
		OwnerID: c.OwnerID, UserID: u.ID, InstanceID: in.ID, ConfigVersion: c.Version, ExecutionContext: "personal"})
	keep(err)
	if !rs.OK() {
		t.Errorf("ResolveRuntime reason = %q, want ok", rs.Reason)
	}
	_, err = x.s.Cleanup(x.ctx, at(365*24*time.Hour), at(time.Hour))
	keep(err)

	if len(errs) < 20 {
		t.Fatalf("only %d error paths exercised, want ≥ 20", len(errs))
	}
	mu.Lock()
	captured := logs.String()
	mu.Unlock()
	for _, p := range planted {
		for _, form := range plantedForms(p) {
			if strings.Contains(captured, form) {
				t.Errorf("captured logs contain a planted value (%d bytes)", len(form))
			}
			for _, err := range errs {
				if strings.Contains(err.Error(), form) {
					t.Errorf("error %q contains a planted value", clip(err.Error()))
				}
			}
		}
	}
	if strings.Contains(captured, "PLANTED") {
		t.Errorf("captured logs contain a planted marker")
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), "PLANTED") {
			t.Errorf("error %q contains a planted marker", clip(err.Error()))
		}
	}
	t.Logf("%d error paths checked, %d bytes of logs captured", len(errs), len(captured))
}
