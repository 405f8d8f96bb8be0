package extauthz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"mcpgw/domain"
	"mcpgw/domain/secrets"
	"mcpgw/store"
)

type checkCase struct {
	name    string
	fixture string // default envoy_post_initialize.json
	// path replaces the request path; "{root}" expands to the route root.
	path   string
	claims func(c *domain.Claims)
	// token overrides minting entirely.
	token func(e *env, r route, c *domain.Claims) string
	req   func(req *authv3.CheckRequest)
	state func(st *store.RuntimeState, e *env, r route)
	// storeErr makes ResolveRuntime fail.
	storeErr error
	opts     func(o *Options)

	wantCode   codes.Code // default OK (a CheckResponse)
	wantStatus int        // HTTP status: 200 allow, else denial
	wantReason string
	// wantChallenge is the exact WWW-Authenticate value with "{prm}" for
	// the route's metadata URL; "" asserts there is none.
	wantChallenge string
	wantInjected  map[string]string // exact (allow only)
	wantRemoved   []string          // subset of headers_to_remove
	wantKept      []string          // never in headers_to_remove
	wantNoDB      bool              // ResolveRuntime must not be called
	// wantResponse are headers that must be on the response to the client
	// (denial headers, or response_headers_to_add on allow).
	wantResponse map[string]string
}

const (
	chNoToken   = `Bearer resource_metadata="{prm}", scope="mcp:access"`
	chInvalid   = `Bearer resource_metadata="{prm}", scope="mcp:access", error="invalid_token"`
	chScope     = `Bearer resource_metadata="{prm}", scope="mcp:access", error="insufficient_scope"`
	chBadRquest = `Bearer resource_metadata="{prm}", scope="mcp:access", error="invalid_request"`
)

func setHeader(name, value string) func(*authv3.CheckRequest) {
	return func(req *authv3.CheckRequest) { req.Attributes.Request.Http.Headers[name] = value }
}

func delHeader(name string) func(*authv3.CheckRequest) {
	return func(req *authv3.CheckRequest) { delete(req.Attributes.Request.Http.Headers, name) }
}

func withMode(mode store.AuthMode) func(st *store.RuntimeState, e *env, r route) {
	return func(st *store.RuntimeState, e *env, r route) { st.Config.AuthMode = mode }
}

func withReason(reason store.Reason) func(st *store.RuntimeState, e *env, r route) {
	return func(st *store.RuntimeState, e *env, r route) { *st = store.RuntimeState{Reason: reason} }
}

func sealStatic(t testing.TB, kr *secrets.KeyRing, configID, json string) []byte {
	t.Helper()
	ct, err := kr.Seal([]byte(json), secrets.AAD("configs", "static_headers", configID))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func withGrant(token string, expiresIn time.Duration) func(st *store.RuntimeState, e *env, r route) {
	return func(st *store.RuntimeState, e *env, r route) {
		st.Config.AuthMode = store.AuthOAuthDynamic
		ct, err := e.kr.Seal([]byte(token), secrets.AAD("grants", "access_token", r.instanceID))
		if err != nil {
			e.t.Fatal(err)
		}
		exp := e.clock.Now().Add(expiresIn)
		st.Grant = &store.Grant{InstanceID: r.instanceID, Version: 1, AccessToken: ct, TokenType: "Bearer", ExpiresAt: &exp}
	}
}

type fakeCreds struct {
	tok string
	err error
}

func (f fakeCreds) EnsureFresh(context.Context, store.RuntimeState) (string, error) {
	return f.tok, f.err
}

// alwaysRemoved is what every allow removes when the client sent none of it.
var alwaysRemoved = []string{"authorization", "cookie", "proxy-authorization", "x-api-key"}

var transportKept = []string{":authority", ":method", ":path", ":scheme", "content-length", "host", "x-request-id"}

var mcpKept = []string{"accept", "content-type", "mcp-method", "mcp-protocol-version", "user-agent"}

func checkCases() []checkCase {
	hs256 := func(e *env, r route, c *domain.Claims) string {
		// HS256 keyed with the RSA public key bytes: the classic
		// algorithm-confusion attack.
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
		tok.Header["kid"] = e.key.ID
		s, err := tok.SignedString(e.key.Private.PublicKey.N.Bytes())
		if err != nil {
			e.t.Fatal(err)
		}
		return s
	}
	none := func(e *env, r route, c *domain.Claims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
		tok.Header["kid"] = e.key.ID
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			e.t.Fatal(err)
		}
		return s
	}
	forged := func(e *env, r route, c *domain.Claims) string {
		_, other, _ := fixtureKeys(e.t)
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = e.key.ID // right kid, wrong key
		s, err := tok.SignedString(other.Private)
		if err != nil {
			e.t.Fatal(err)
		}
		return s
	}
	unknownKid := func(e *env, r route, c *domain.Claims) string {
		_, other, _ := fixtureKeys(e.t)
		return mint(e.t, other, c)
	}
	noKid := func(e *env, r route, c *domain.Claims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		s, err := tok.SignedString(e.key.Private)
		if err != nil {
			e.t.Fatal(err)
		}
		return s
	}
	tampered := func(e *env, r route, c *domain.Claims) string {
		good := mint(e.t, e.key, c)
		parts := strings.Split(good, ".")
		c2 := *c
		c2.Subject = store.NewID()
		bad := mint(e.t, e.key, &c2)
		return parts[0] + "." + strings.Split(bad, ".")[1] + "." + parts[2]
	}
	allowNone := func(name string) checkCase {
		return checkCase{name: name, wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{},
			wantRemoved: alwaysRemoved, wantKept: append(slices.Clone(transportKept), mcpKept...)}
	}
	notFound := func(name, path, reason string) checkCase {
		return checkCase{name: name, path: path, wantStatus: 404, wantReason: reason, wantNoDB: true}
	}
	unauth := func(name, reason string, claims func(*domain.Claims), token func(*env, route, *domain.Claims) string) checkCase {
		return checkCase{name: name, claims: claims, token: token, wantStatus: 401, wantReason: reason, wantChallenge: chInvalid, wantNoDB: true}
	}
	otherRoute := newRoute(store.ScopeUser)

	cases := []checkCase{
		// Step 1: path.
		allowNone("route root allowed"),
		{name: "descendant allowed with path_passthrough", path: "{root}/tools/list", state: func(st *store.RuntimeState, e *env, r route) { st.Config.PathPassthrough = true },
			wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},
		{name: "descendant with percent-encoded letter allowed", path: "{root}/a%41b", state: func(st *store.RuntimeState, e *env, r route) { st.Config.PathPassthrough = true },
			wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},
		{name: "descendant without path_passthrough", path: "{root}/tools", wantStatus: 404, wantReason: ReasonPassthroughOff},
		notFound("dot-dot segment", "{root}/../x", ReasonBadDescendant),
		notFound("dot segment", "{root}/./x", ReasonBadDescendant),
		notFound("encoded dot-dot", "{root}/%2e%2e/x", ReasonBadDescendant),
		notFound("encoded dot upper case", "{root}/%2E./x", ReasonBadDescendant),
		notFound("encoded slash", "{root}/a%2fb", ReasonBadDescendant),
		notFound("encoded backslash", "{root}/a%5Cb", ReasonBadDescendant),
		notFound("double-encoded dot", "{root}/%252e%252e/x", ReasonBadDescendant),
		notFound("double slash", "{root}//x", ReasonBadDescendant),
		notFound("backslash", "{root}/a\\..\\b", ReasonBadDescendant),
		notFound("trailing dot", "{root}/x.", ReasonBadDescendant),
		notFound("triple dot", "{root}/...", ReasonBadDescendant),
		notFound("trailing slash", "{root}/", ReasonBadDescendant),
		notFound("path parameter", "{root}/..;/x", ReasonBadDescendant),
		notFound("encoded NUL", "{root}/a%00", ReasonBadDescendant),
		notFound("not a connect route", "/api/v1/configs", ReasonNotRoute),
		notFound("route key too short", "/mcp-connect/user/"+otherRoute.ref.OwnerID+"/"+otherRoute.ref.ConfigID+"/short", ReasonNotRoute),
		{name: "path names another route than context_extensions", path: otherRoute.ref.Path(), wantStatus: 404, wantReason: ReasonRouteContext, wantNoDB: true},
		{name: "missing context_extensions", req: func(req *authv3.CheckRequest) { req.Attributes.ContextExtensions = nil },
			wantStatus: 404, wantReason: ReasonRouteContext, wantNoDB: true},

		// Step 2: origin.
		{name: "allowed origin", req: setHeader("origin", testOrigin), wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}, wantRemoved: []string{"origin"}},
		{name: "allowed origin with default port", req: setHeader("origin", "https://APP.example.test:443"), wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},
		{name: "disallowed origin", req: setHeader("origin", "https://evil.example"), wantStatus: 403, wantReason: ReasonOrigin, wantNoDB: true},
		{name: "origin null", req: setHeader("origin", "null"), wantStatus: 403, wantReason: ReasonOrigin, wantNoDB: true},
		{name: "origin wrong port", req: setHeader("origin", "https://app.example.test:8443"), wantStatus: 403, wantReason: ReasonOrigin, wantNoDB: true},
		{name: "origin wrong scheme", req: setHeader("origin", "http://app.example.test"), wantStatus: 403, wantReason: ReasonOrigin, wantNoDB: true},
		{name: "origin checked before bearer", req: func(req *authv3.CheckRequest) {
			setHeader("origin", "https://evil.example")(req)
			delHeader("authorization")(req)
		}, wantStatus: 403, wantReason: ReasonOrigin, wantNoDB: true},

		{name: "CORS preflight from allowed origin", req: func(req *authv3.CheckRequest) {
			req.Attributes.Request.Http.Method = "OPTIONS"
			h := req.Attributes.Request.Http.Headers
			h[":method"], h["origin"], h["access-control-request-method"] = "OPTIONS", testOrigin, "POST"
			h["access-control-request-headers"] = "authorization, mcp-session-id"
			delete(h, "authorization")
		}, wantStatus: 204, wantReason: ReasonPreflight, wantNoDB: true, wantResponse: map[string]string{
			"access-control-allow-origin": testOrigin, "access-control-allow-methods": "DELETE, GET, OPTIONS, POST", "vary": "origin"}},
		{name: "CORS preflight from disallowed origin", req: func(req *authv3.CheckRequest) {
			req.Attributes.Request.Http.Method = "OPTIONS"
			h := req.Attributes.Request.Http.Headers
			h["origin"], h["access-control-request-method"] = "https://evil.example", "POST"
			delete(h, "authorization")
		}, wantStatus: 403, wantReason: ReasonOrigin, wantNoDB: true},
		{name: "allowed origin can read the challenge", req: func(req *authv3.CheckRequest) {
			setHeader("origin", "https://APP.example.test:443")(req)
			delHeader("authorization")(req)
		}, wantStatus: 401, wantReason: ReasonNoToken, wantChallenge: chNoToken, wantNoDB: true, wantResponse: map[string]string{
			"access-control-allow-origin": testOrigin, "access-control-expose-headers": "mcp-session-id, www-authenticate"}},
		{name: "allowed origin gets CORS on allow", req: setHeader("origin", testOrigin), wantStatus: 200, wantReason: ReasonAllowed,
			wantInjected: map[string]string{}, wantResponse: map[string]string{"access-control-allow-origin": testOrigin, "vary": "origin"}},
		// A path refused at step 1 never reaches the origin check; CORS
		// headers still go only to an allowed origin (no wantResponse: the
		// runner asserts there is no access-control-allow-origin).
		{name: "bad path from disallowed origin gets no CORS", path: "{root}/../x", req: setHeader("origin", "https://evil.example"),
			wantStatus: 404, wantReason: ReasonBadDescendant, wantNoDB: true},
		{name: "bad path from allowed origin can read the 404", path: "{root}/../x", req: setHeader("origin", testOrigin),
			wantStatus: 404, wantReason: ReasonBadDescendant, wantNoDB: true, wantResponse: map[string]string{"access-control-allow-origin": testOrigin}},

		// Step 3: bearer.
		{name: "no authorization", req: delHeader("authorization"), wantStatus: 401, wantReason: ReasonNoToken, wantChallenge: chNoToken, wantNoDB: true},
		{name: "basic authorization", req: setHeader("authorization", "Basic dXNlcjpwYXNz"), wantStatus: 401, wantReason: ReasonNoToken, wantChallenge: chNoToken, wantNoDB: true},
		{name: "empty bearer", req: setHeader("authorization", "Bearer "), wantStatus: 401, wantReason: ReasonBadAuthorization, wantChallenge: chInvalid, wantNoDB: true},
		{name: "two bearer values joined by Envoy", req: func(req *authv3.CheckRequest) {
			h := req.Attributes.Request.Http.Headers
			h["authorization"] = h["authorization"] + ",Bearer abc"
		}, wantStatus: 401, wantReason: ReasonBadAuthorization, wantChallenge: chInvalid, wantNoDB: true},
		{name: "access_token in query", path: "{root}?access_token=abc", wantStatus: 400, wantReason: ReasonTokenInQuery, wantChallenge: chBadRquest, wantNoDB: true},
		{name: "encoded access_token in query", path: "{root}?x=1&Access%5FToken=abc", wantStatus: 400, wantReason: ReasonTokenInQuery, wantChallenge: chBadRquest, wantNoDB: true},
		{name: "other query passes", path: "{root}?cursor=abc", wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},
		{name: "lower-case bearer scheme", req: func(req *authv3.CheckRequest) {
			h := req.Attributes.Request.Http.Headers
			h["authorization"] = "bearer " + strings.TrimPrefix(h["authorization"], "Bearer ")
		}, wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},

		// Step 4: JWT.
		unauth("alg none", ReasonTokenInvalid, nil, none),
		unauth("HS256 keyed with the public key", ReasonTokenInvalid, nil, hs256),
		unauth("unknown kid", ReasonTokenUnknownKey, nil, unknownKid),
		unauth("missing kid", ReasonTokenUnknownKey, nil, noKid),
		unauth("right kid, wrong key", ReasonTokenInvalid, nil, forged),
		unauth("tampered payload", ReasonTokenInvalid, nil, tampered),
		unauth("garbage token", ReasonTokenInvalid, nil, func(*env, route, *domain.Claims) string { return "not.a.jwt" }),
		unauth("wrong issuer", ReasonTokenIssuer, func(c *domain.Claims) { c.Issuer = "https://evil.example" }, nil),
		unauth("wrong audience", ReasonTokenAudience, func(c *domain.Claims) { c.Audience = jwt.ClaimStrings{otherRoute.ref.URL(testBase)} }, nil),
		unauth("two audiences", ReasonTokenAudience, func(c *domain.Claims) { c.Audience = append(c.Audience, "https://other.example") }, nil),
		unauth("expired", ReasonTokenExpired, func(c *domain.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(c.IssuedAt.Add(-time.Minute))
			c.IssuedAt = jwt.NewNumericDate(c.IssuedAt.Add(-16 * time.Minute))
		}, nil),
		unauth("no exp", ReasonTokenInvalid, func(c *domain.Claims) { c.ExpiresAt = nil }, nil),
		unauth("not yet valid", ReasonTokenNotYetValid, func(c *domain.Claims) { c.NotBefore = jwt.NewNumericDate(c.IssuedAt.Add(5 * time.Minute)) }, nil),
		unauth("issued in the future", ReasonTokenNotYetValid, func(c *domain.Claims) { c.IssuedAt = jwt.NewNumericDate(c.IssuedAt.Add(5 * time.Minute)) }, nil),
		unauth("mcp_id of another route", ReasonTokenClaims, func(c *domain.Claims) { c.MCPID = otherRoute.ref.MCPID() }, nil),
		unauth("owner_id mismatch", ReasonTokenClaims, func(c *domain.Claims) { c.OwnerID = store.NewID() }, nil),
		unauth("owner_scope mismatch", ReasonTokenClaims, func(c *domain.Claims) { c.OwnerScope = "org" }, nil),
		unauth("route_key mismatch", ReasonTokenClaims, func(c *domain.Claims) { c.RouteKey = domain.NewRouteKey() }, nil),
		unauth("execution_context mismatch", ReasonTokenClaims, func(c *domain.Claims) { c.ExecutionContext = "org:" + store.NewID() }, nil),
		unauth("subject not a user id", ReasonTokenClaims, func(c *domain.Claims) { c.Subject = "admin" }, nil),
		{name: "expired within leeway", claims: func(c *domain.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(c.IssuedAt.Add(-10 * time.Second))
			c.IssuedAt = jwt.NewNumericDate(c.IssuedAt.Add(-15 * time.Minute))
		}, wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},

		// Step 5: scope, before the database.
		{name: "scope profile only", claims: func(c *domain.Claims) { c.Scope = "profile" }, wantStatus: 403, wantReason: ReasonInsufficientScope, wantChallenge: chScope, wantNoDB: true},
		{name: "empty scope", claims: func(c *domain.Claims) { c.Scope = "" }, wantStatus: 403, wantReason: ReasonInsufficientScope, wantChallenge: chScope, wantNoDB: true},
		{name: "scope prefix is not the scope", claims: func(c *domain.Claims) { c.Scope = "mcp:accessory" }, wantStatus: 403, wantReason: ReasonInsufficientScope, wantChallenge: chScope, wantNoDB: true},
		{name: "scope with profile", claims: func(c *domain.Claims) { c.Scope = "profile mcp:access" }, wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}},

		// Step 6: recheck.
		{name: "rotated route", state: withReason(store.ReasonRouteKeyMismatch), wantStatus: 404, wantReason: "route_key_mismatch"},
		{name: "unknown route", state: withReason(store.ReasonRouteNotFound), wantStatus: 404, wantReason: "route_not_found"},
		{name: "deleted config", state: withReason(store.ReasonConfigDeleted), wantStatus: 404, wantReason: "config_deleted"},
		{name: "disabled config", state: withReason(store.ReasonConfigDisabled), wantStatus: 403, wantReason: "config_disabled"},
		{name: "version advanced", state: withReason(store.ReasonVersionMismatch), wantStatus: 403, wantReason: "config_version_mismatch"},
		{name: "not assigned", state: withReason(store.ReasonNotAssigned), wantStatus: 403, wantReason: "not_assigned"},
		{name: "user blocked", state: withReason(store.ReasonUserBlocked), wantStatus: 403, wantReason: "user_blocked"},
		{name: "instance revoked", state: withReason(store.ReasonInstanceNotActive), wantStatus: 403, wantReason: "instance_not_active"},
		{name: "store returns another instance", state: func(st *store.RuntimeState, e *env, r route) { st.InstanceID = store.NewID() }, wantStatus: 403, wantReason: "instance_mismatch"},
		{name: "database unavailable", storeErr: fmt.Errorf("conn refused: %w", store.ErrUnavailable), wantCode: codes.Unavailable, wantReason: ReasonInfrastructure},
		{name: "unexpected store error fails closed", storeErr: errors.New("boom"), wantCode: codes.Unavailable, wantReason: ReasonInfrastructure},

		// Step 7: credentials.
		{name: "static headers injected and own authorization", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuthMode = store.AuthStaticHeaders
			st.Config.StaticHeaders = sealStatic(e.t, e.kr, r.ref.ConfigID, `{"authorization":"Bearer upstream-static","x-upstream-key":"k-123"}`)
			st.Config.StaticHeaderNames = []string{"authorization", "x-upstream-key"}
		}, req: setHeader("x-upstream-key", "client-supplied"), wantStatus: 200, wantReason: ReasonAllowed,
			wantInjected: map[string]string{"authorization": "Bearer upstream-static", "x-upstream-key": "k-123"},
			wantRemoved:  []string{"cookie", "proxy-authorization", "x-api-key"}, wantKept: []string{"authorization", "x-upstream-key"}},
		{name: "static headers sealed for another config", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuthMode = store.AuthStaticHeaders
			st.Config.StaticHeaders = sealStatic(e.t, e.kr, store.NewID(), `{"authorization":"Bearer x"}`)
			st.Config.StaticHeaderNames = []string{"authorization"}
		}, wantStatus: 503, wantReason: ReasonCredentialError},
		{name: "static header with CRLF refused", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuthMode = store.AuthStaticHeaders
			st.Config.StaticHeaders = sealStatic(e.t, e.kr, r.ref.ConfigID, `{"x-k":"a\r\nx-evil: 1"}`)
			st.Config.StaticHeaderNames = []string{"x-k"}
		}, wantStatus: 403, wantReason: ReasonHeaderConflict},
		{name: "decrypted static header colliding with an auxiliary header refused", state: func(st *store.RuntimeState, e *env, r route) {
			// The plaintext names column disagrees with the ciphertext, so
			// ValidateSources alone cannot see the collision.
			st.Config.AuthMode = store.AuthStaticHeaders
			st.Config.StaticHeaders = sealStatic(e.t, e.kr, r.ref.ConfigID, `{"x-tenant":"from-static"}`)
			st.Config.StaticHeaderNames = []string{"x-other"}
			st.Config.AuxHeaders = map[string]string{"x-tenant": "from-aux"}
		}, wantStatus: 403, wantReason: ReasonHeaderConflict},
		{name: "unknown auth mode fails closed", state: withMode(store.AuthMode("kerberos")),
			req: setHeader("x-upstream-key", "client"), wantStatus: 403, wantReason: ReasonCredentialError},
		{name: "static header names stripped in none mode", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.StaticHeaderNames = []string{"x-upstream-key"}
		}, req: setHeader("x-upstream-key", "client"), wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{}, wantRemoved: []string{"x-upstream-key"}},
		{name: "oauth stored grant", state: withGrant("upstream-access-1", time.Hour), wantStatus: 200, wantReason: ReasonAllowed,
			wantInjected: map[string]string{"authorization": "Bearer upstream-access-1"}, wantKept: []string{"authorization"}, wantRemoved: []string{"cookie"}},
		{name: "oauth stored grant about to expire", state: withGrant("upstream-access-1", 10*time.Second), wantStatus: 401, wantReason: ReasonReauth, wantChallenge: chInvalid},
		{name: "oauth grant missing", state: func(st *store.RuntimeState, e *env, r route) { st.Config.AuthMode = store.AuthOAuthStatic }, wantStatus: 401, wantReason: ReasonReauth, wantChallenge: chInvalid},
		{name: "oauth via Credentials", state: withMode(store.AuthOAuthDynamic), opts: func(o *Options) { o.Credentials = fakeCreds{tok: "fresh-1"} },
			wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{"authorization": "Bearer fresh-1"}},
		{name: "oauth Credentials needs reauth", state: withMode(store.AuthOAuthDynamic), opts: func(o *Options) { o.Credentials = fakeCreds{err: fmt.Errorf("refused: %w", ErrReauthRequired)} },
			wantStatus: 401, wantReason: ReasonReauth, wantChallenge: chInvalid},
		{name: "oauth Credentials transient", state: withMode(store.AuthOAuthDynamic), opts: func(o *Options) { o.Credentials = fakeCreds{err: ErrCredentialsTransient} },
			wantStatus: 503, wantReason: ReasonProviderTransient},
		{name: "oauth Credentials database down", state: withMode(store.AuthOAuthDynamic), opts: func(o *Options) { o.Credentials = fakeCreds{err: store.ErrUnavailable} },
			wantCode: codes.Unavailable, wantReason: ReasonInfrastructure},
		{name: "oauth Credentials token with CRLF", state: withMode(store.AuthOAuthDynamic), opts: func(o *Options) { o.Credentials = fakeCreds{tok: "a\r\nx: y"} },
			wantStatus: 403, wantReason: ReasonCredentialError},
		{name: "oauth with static authorization is a conflict", state: func(st *store.RuntimeState, e *env, r route) {
			withGrant("t", time.Hour)(st, e, r)
			st.Config.StaticHeaderNames = []string{"authorization"}
		}, wantStatus: 403, wantReason: ReasonHeaderConflict},

		// Step 8: header policy.
		{name: "header policy on an Envoy SSE GET", fixture: "envoy_get_sse.json", wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{},
			wantRemoved: []string{"authorization", "cookie", "origin", "x-api-key", "x-auth-user", "x-forwarded-for", "x-token-refresh"},
			wantKept:    []string{":authority", ":path", "accept", "last-event-id", "mcp-protocol-version", "mcp-session-id", "user-agent", "x-request-id"}},
		{name: "header policy on raw header_map", fixture: "envoy_raw_header_map.json", wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{},
			wantRemoved: []string{"authorization", "x-custom"}, wantKept: []string{":path", "mcp-session-id"}},
		{name: "auxiliary headers injected", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuxHeaders = map[string]string{"x-tenant": "acme", "x-region": "eu"}
		}, req: setHeader("x-tenant", "evil"), wantStatus: 200, wantReason: ReasonAllowed,
			wantInjected: map[string]string{"x-tenant": "acme", "x-region": "eu"}, wantKept: []string{"x-tenant"}},
		{name: "credential-like auxiliary header refused", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuxHeaders = map[string]string{"x-secret-key": "abc"}
		}, wantStatus: 403, wantReason: ReasonHeaderConflict},
		{name: "auxiliary authorization refused", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuxHeaders = map[string]string{"authorization": "Bearer x"}
		}, wantStatus: 403, wantReason: ReasonHeaderConflict},
		{name: "auxiliary hop-by-hop refused", state: func(st *store.RuntimeState, e *env, r route) {
			st.Config.AuxHeaders = map[string]string{"connection": "close"}
		}, wantStatus: 403, wantReason: ReasonHeaderConflict},
		{name: "forwarding and envoy headers removed", req: func(req *authv3.CheckRequest) {
			h := req.Attributes.Request.Http.Headers
			h["forwarded"] = "for=1.2.3.4"
			h["x-envoy-external-address"] = "1.2.3.4"
			h["proxy-authorization"] = "Basic eA=="
			h["x-forwarded-host"] = "evil"
		}, wantStatus: 200, wantReason: ReasonAllowed, wantInjected: map[string]string{},
			wantRemoved: []string{"forwarded", "proxy-authorization", "x-envoy-external-address", "x-forwarded-host", "x-forwarded-proto"}},
	}
	return cases
}

func TestCheckTable(t *testing.T) {
	cases := checkCases()
	if len(cases) < 50 {
		t.Fatalf("only %d cases; the issue asks for at least 50", len(cases))
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) { runCheckCase(t, tc) })
	}
	t.Logf("%d Check cases", len(cases))
}

func runCheckCase(t *testing.T, tc checkCase) {
	fs := &fakeStore{err: tc.storeErr}
	e := newEnv(t, fs, tc.opts)
	r := newRoute(store.ScopeUser)
	st := okState(r, store.AuthNone)
	if tc.state != nil {
		tc.state(&st, e, r)
	}
	fs.state = st

	c := r.claims(e.clock.Now())
	if tc.claims != nil {
		tc.claims(c)
	}
	var tok string
	if tc.token != nil {
		tok = tc.token(e, r, c)
	} else {
		tok = mint(t, e.key, c)
	}
	path := strings.ReplaceAll(tc.path, "{root}", r.ref.Path())
	fx := tc.fixture
	if fx == "" {
		fx = "envoy_post_initialize.json"
	}
	req := fixture(t, fx, r, path, tok)
	if tc.req != nil {
		tc.req(req)
	}

	resp, err := e.client.Check(context.Background(), req)
	wantCode := tc.wantCode
	if got := status.Code(err); got != wantCode {
		t.Fatalf("gRPC code = %v (%v), want %v", got, err, wantCode)
	}
	outcome := "allow"
	switch {
	case wantCode != codes.OK:
		outcome = "error"
	case tc.wantStatus != 200:
		outcome = "deny"
	}
	if got := testutil.ToFloat64(e.srv.m.decisions.WithLabelValues(outcome, tc.wantReason)); got != 1 {
		t.Errorf("decisions{outcome=%q,reason=%q} = %v, want 1; logs:\n%s", outcome, tc.wantReason, got, e.logs.String())
	}
	if tc.wantNoDB && fs.nQueries() != 0 {
		t.Errorf("ResolveRuntime called %d times; the decision must come before any database access", fs.nQueries())
	}
	if wantCode != codes.OK {
		return
	}
	if err := resp.ValidateAll(); err != nil {
		t.Fatalf("CheckResponse fails Envoy's proto validation: %v", err)
	}
	prm := testBase + PRMPath + r.ref.Path()
	if tc.wantStatus == 200 {
		ok := resp.GetOkResponse()
		if ok == nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("want OK response, got %v", resp)
		}
		injected := map[string]string{}
		var names []string
		for _, h := range ok.GetHeaders() {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
			}
			injected[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			names = append(names, h.GetHeader().GetKey())
		}
		if tc.wantInjected != nil && !maps.Equal(injected, tc.wantInjected) {
			t.Errorf("injected = %v, want %v", injected, tc.wantInjected)
		}
		if !slices.IsSorted(names) || !slices.IsSorted(ok.GetHeadersToRemove()) {
			t.Errorf("headers not sorted: set %v, remove %v", names, ok.GetHeadersToRemove())
		}
		resp := map[string]string{}
		for _, h := range ok.GetResponseHeadersToAdd() {
			resp[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		for k, v := range tc.wantResponse {
			if resp[k] != v {
				t.Errorf("response header %s = %q, want %q", k, resp[k], v)
			}
		}
		removed := ok.GetHeadersToRemove()
		for _, n := range tc.wantRemoved {
			if !slices.Contains(removed, n) {
				t.Errorf("headers_to_remove %v lacks %q", removed, n)
			}
		}
		for _, n := range append(slices.Clone(tc.wantKept), transportKept...) {
			if slices.Contains(removed, n) {
				t.Errorf("headers_to_remove %v removes %q", removed, n)
			}
		}
		for n := range injected {
			if slices.Contains(removed, n) {
				t.Errorf("injected header %q is also removed (Envoy removes after setting)", n)
			}
		}
		// Every client header that is neither allowed nor transport is removed.
		for n := range req.GetAttributes().GetRequest().GetHttp().GetHeaders() {
			if _, inj := injected[n]; !inj && !strings.HasPrefix(n, ":") && !slices.Contains(transportKept, n) && !slices.Contains([]string{"accept", "accept-encoding", "content-encoding", "content-type", "last-event-id", "mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id", "user-agent"}, n) && !slices.Contains(removed, n) {
				t.Errorf("client header %q neither allowed nor removed", n)
			}
		}
		return
	}
	den := resp.GetDeniedResponse()
	if den == nil {
		t.Fatalf("want denied response, got %v", resp)
	}
	if resp.GetStatus().GetCode() == 0 {
		t.Errorf("denial with OK rpc status")
	}
	if got := int(den.GetStatus().GetCode()); got != tc.wantStatus {
		t.Errorf("HTTP status = %d, want %d (reason logs: %s)", got, tc.wantStatus, e.logs.String())
	}
	var challenge string
	var hn []string
	got := map[string]string{}
	for _, h := range den.GetHeaders() {
		got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		hn = append(hn, h.GetHeader().GetKey())
		if h.GetHeader().GetKey() == "www-authenticate" {
			challenge = h.GetHeader().GetValue()
		}
	}
	if !slices.IsSorted(hn) {
		t.Errorf("denial headers not sorted: %v", hn)
	}
	for k, v := range tc.wantResponse {
		if got[k] != v {
			t.Errorf("denial header %s = %q, want %q", k, got[k], v)
		}
	}
	if tc.wantResponse == nil && got["access-control-allow-origin"] != "" {
		t.Errorf("unexpected CORS header on %v", got)
	}
	want := strings.ReplaceAll(tc.wantChallenge, "{prm}", prm)
	if challenge != want {
		t.Errorf("WWW-Authenticate = %q, want %q", challenge, want)
	}
	body := den.GetBody()
	for _, leak := range []string{r.ref.OwnerID, r.userID, r.instanceID, tc.wantReason, tok} {
		if leak != "" && strings.Contains(body, leak) {
			t.Errorf("denial body %q reveals %q", body, leak)
		}
	}
	if tc.wantStatus == 204 {
		if body != "" {
			t.Errorf("204 with body %q", body)
		}
	} else if !slices.Contains([]string{bodyUnauthorized, bodyForbidden, bodyNotFound, bodyBadRequest, bodyUnavailable}, body) {
		t.Errorf("denial body %q is not one of the generic bodies", body)
	}
}

// TestStaticCacheKeepsAADBinding: a static-header ciphertext that opened for
// config A and is then copied into config B's row (database tampering) must
// not be served from the cache for B.
func TestStaticCacheKeepsAADBinding(t *testing.T) {
	fs := &fakeStore{}
	e := newEnv(t, fs, nil)
	a, b := newRoute(store.ScopeUser), newRoute(store.ScopeUser)
	ct := sealStatic(t, e.kr, a.ref.ConfigID, `{"authorization":"Bearer for-a"}`)
	for _, tc := range []struct {
		r    route
		want int
	}{{a, 200}, {b, 503}} {
		st := okState(tc.r, store.AuthStaticHeaders)
		st.Config.StaticHeaders, st.Config.StaticHeaderNames = ct, []string{"authorization"}
		fs.mu.Lock()
		fs.state = st
		fs.mu.Unlock()
		if got := checkStatus(t, e, tc.r, mint(t, e.key, tc.r.claims(e.clock.Now()))); got != tc.want {
			t.Fatalf("config %s: status %d, want %d", tc.r.ref.ConfigID, got, tc.want)
		}
	}
}
