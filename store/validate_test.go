package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	vNow  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	vID1  = "11111111-1111-4111-8111-111111111111"
	vID2  = "22222222-2222-4222-8222-222222222222"
	vHash = make([]byte, 32)
	vKey  = strings.Repeat("A", 32)
	vPKCE = strings.Repeat("b", 43)
)

func TestValidate(t *testing.T) {
	user := func(f func(*User)) func() error {
		u := User{ID: vID1, Email: "a@example.com", DisplayName: "A", Status: UserActive}
		f(&u)
		return u.Validate
	}
	config := func(f func(*Config)) func() error {
		c := Config{ID: vID1, OwnerScope: ScopeUser, OwnerID: vID2, Name: "c", RemoteURL: "https://mcp.example.com/mcp",
			AuthMode: AuthNone, SharingMode: SingleUser}
		f(&c)
		return c.Validate
	}
	client := func(f func(*OAuthClient)) func() error {
		c := OAuthClient{ID: "dcr:abc", RedirectURIs: []string{"http://127.0.0.1:3000/cb"}, TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scope: "mcp:access"}
		f(&c)
		return c.Validate
	}
	code := func(f func(*AuthCode)) func() error {
		c := AuthCode{Hash: vHash, FamilyID: vID1, ClientID: "dcr:x", RedirectURI: "https://app.example/cb",
			Resource: "https://gw.example/mcp-connect/user/x", Scopes: []string{"mcp:access"}, CodeChallenge: vPKCE,
			ConfigID: vID1, RouteKey: vKey, OwnerScope: ScopeUser, OwnerID: vID2, ExecutionContext: "personal",
			UserID: vID2, InstanceID: vID1, ConfigVersion: 1, ExpiresAt: vNow}
		f(&c)
		return c.Validate
	}
	rq := func(f func(*RuntimeQuery)) func() error {
		q := RuntimeQuery{ConfigID: vID1, RouteKey: vKey, OwnerScope: ScopeOrg, OwnerID: vID2, UserID: vID1,
			InstanceID: vID2, ConfigVersion: 3, ExecutionContext: "org:" + vID2}
		f(&q)
		return q.Validate
	}
	audit := func(f func(*AuditEvent)) func() error {
		e := AuditEvent{Type: "config.create", Outcome: "success", ActorUserID: vID1, Metadata: map[string]string{"k": "v"}}
		f(&e)
		return e.Validate
	}
	grant := func(f func(*Grant)) func() error {
		g := Grant{InstanceID: vID1, AccessToken: []byte("ct"), TokenType: "Bearer"}
		f(&g)
		return g.Validate
	}
	big := func(n int) []byte { return make([]byte, n) }
	manyHeaders := map[string]string{}
	for i := 0; i < 51; i++ {
		manyHeaders["x-h"+strings.Repeat("a", i)] = "v"
	}
	manyScopes := make([]string, 21)
	for i := range manyScopes {
		manyScopes[i] = "s"
	}

	tests := []struct {
		name  string
		check func() error
		field string // "" = valid
	}{
		{"user ok", user(func(*User) {}), ""},
		{"user empty status ok", user(func(u *User) { u.Status = "" }), ""},
		{"user empty id", user(func(u *User) { u.ID = "" }), "user.id"},
		{"user bad id", user(func(u *User) { u.ID = "nope" }), "user.id"},
		{"user upper-case uuid", user(func(u *User) { u.ID = strings.ToUpper(vID1) + "x" }), "user.id"},
		{"user no email", user(func(u *User) { u.Email = "" }), "user.email"},
		{"user email no at", user(func(u *User) { u.Email = "example.com" }), "user.email"},
		{"user email space", user(func(u *User) { u.Email = "a b@example.com" }), "user.email"},
		{"user email too long", user(func(u *User) { u.Email = strings.Repeat("a", 320) + "@x" }), "user.email"},
		{"user name too long", user(func(u *User) { u.DisplayName = strings.Repeat("n", 201) }), "user.display_name"},
		{"user name control", user(func(u *User) { u.DisplayName = "a\nb" }), "user.display_name"},
		{"user unknown status", user(func(u *User) { u.Status = "zombie" }), "user.status"},
		{"user created deleted", user(func(u *User) { u.Status = UserDeleted }), "user.status"},
		{"user oidc half", user(func(u *User) { u.OIDCIssuer = "https://idp" }), "user.oidc"},
		{"user oidc ok", user(func(u *User) { u.OIDCIssuer, u.OIDCSubject = "https://idp", "sub" }), ""},

		{"org ok", Org{ID: vID1, Name: "Acme"}.Validate, ""},
		{"org blank name", Org{ID: vID1, Name: "  "}.Validate, "org.name"},
		{"org long name", Org{ID: vID1, Name: strings.Repeat("x", 201)}.Validate, "org.name"},
		{"member ok", Member{OrgID: vID1, UserID: vID2, Role: RoleAdmin}.Validate, ""},
		{"member bad role", Member{OrgID: vID1, UserID: vID2, Role: "god"}.Validate, "member.role"},
		{"member no org", Member{UserID: vID2, Role: RoleAdmin}.Validate, "member.org_id"},

		{"api token ok", APIToken{ID: vID1, UserID: vID2, Name: "ci", Hash: vHash}.Validate, ""},
		{"api token short hash", APIToken{ID: vID1, UserID: vID2, Hash: big(31)}.Validate, "api_token.hash"},
		{"api token no hash", APIToken{ID: vID1, UserID: vID2}.Validate, "api_token.hash"},
		{"session ok", Session{IDHash: vHash, UserID: vID1, CSRFHash: vHash, ExpiresAt: vNow}.Validate, ""},
		{"session long hash", Session{IDHash: big(33), UserID: vID1, ExpiresAt: vNow}.Validate, "session.id_hash"},
		{"session no expiry", Session{IDHash: vHash, UserID: vID1}.Validate, "session.expires_at"},

		{"config ok", config(func(*Config) {}), ""},
		{"config personal multi", config(func(c *Config) { c.SharingMode = MultiUser }), "config.sharing_mode"},
		{"config org multi ok", config(func(c *Config) { c.OwnerScope, c.SharingMode = ScopeOrg, MultiUser }), ""},
		{"config unknown scope", config(func(c *Config) { c.OwnerScope = "team" }), "config.owner_scope"},
		{"config unknown auth", config(func(c *Config) { c.AuthMode = "magic" }), "config.auth_mode"},
		{"config unknown sharing", config(func(c *Config) { c.SharingMode = "all" }), "config.sharing_mode"},
		{"config status deleted", config(func(c *Config) { c.Status = ConfigDeleted }), "config.status"},
		{"config status unknown", config(func(c *Config) { c.Status = "paused" }), "config.status"},
		{"config no url", config(func(c *Config) { c.RemoteURL = "" }), "config.remote_url"},
		{"config ftp url", config(func(c *Config) { c.RemoteURL = "ftp://x/y" }), "config.remote_url"},
		{"config userinfo url", config(func(c *Config) { c.RemoteURL = "https://u:p@x/y" }), "config.remote_url"},
		{"config fragment url", config(func(c *Config) { c.RemoteURL = "https://x/y#f" }), "config.remote_url"},
		{"config relative url", config(func(c *Config) { c.RemoteURL = "/mcp" }), "config.remote_url"},
		{"config long url", config(func(c *Config) { c.RemoteURL = "https://x/" + strings.Repeat("a", 2048) }), "config.remote_url"},
		{"config static needs headers", config(func(c *Config) { c.AuthMode = AuthStaticHeaders }), "config.static_headers"},
		{"config static ok", config(func(c *Config) {
			c.AuthMode, c.StaticHeaders, c.StaticHeaderNames = AuthStaticHeaders, []byte("ct"), []string{"x-api-key"}
		}), ""},
		{"config static names without ct", config(func(c *Config) { c.StaticHeaderNames = []string{"x-a"} }), "config.static_headers"},
		{"config static too big", config(func(c *Config) {
			c.StaticHeaders, c.StaticHeaderNames = big(64<<10+1), []string{"x-a"}
		}), "config.static_headers"},
		{"config static upper", config(func(c *Config) {
			c.StaticHeaders, c.StaticHeaderNames = []byte("ct"), []string{"X-A"}
		}), "config.static_header_names"},
		{"config static dup", config(func(c *Config) {
			c.StaticHeaders, c.StaticHeaderNames = []byte("ct"), []string{"x-a", "x-a"}
		}), "config.static_header_names"},
		{"config static bad token", config(func(c *Config) {
			c.StaticHeaders, c.StaticHeaderNames = []byte("ct"), []string{"x a"}
		}), "config.static_header_names"},
		{"config aux ok", config(func(c *Config) { c.AuxHeaders = map[string]string{"X-Tenant": "t1"} }), ""},
		{"config aux crlf", config(func(c *Config) { c.AuxHeaders = map[string]string{"x-t": "a\r\nb: c"} }), "config.aux_headers"},
		{"config aux bad name", config(func(c *Config) { c.AuxHeaders = map[string]string{"x:t": "a"} }), "config.aux_headers"},
		{"config aux too many", config(func(c *Config) { c.AuxHeaders = manyHeaders }), "config.aux_headers"},
		{"config aux shadows static", config(func(c *Config) {
			c.StaticHeaders, c.StaticHeaderNames = []byte("ct"), []string{"x-a"}
			c.AuxHeaders = map[string]string{"X-A": "v"}
		}), "config.aux_headers"},
		{"config oauth static needs creds", config(func(c *Config) { c.AuthMode = AuthOAuthStatic }), "config.provider.client_credentials"},
		{"config oauth static ok", config(func(c *Config) {
			c.AuthMode, c.Provider.ClientCredentials = AuthOAuthStatic, []byte("ct")
		}), ""},
		{"config provider bad endpoint", config(func(c *Config) { c.Provider.TokenEndpoint = "not a url" }), "config.provider.token_endpoint"},
		{"config provider too many scopes", config(func(c *Config) { c.Provider.Scopes = manyScopes }), "config.provider.scopes"},
		{"config provider bad scope", config(func(c *Config) { c.Provider.Scopes = []string{"a b"} }), "config.provider.scopes"},
		{"config registry bad json", config(func(c *Config) { c.Registry = json.RawMessage("{") }), "config.registry"},
		{"config registry too big", config(func(c *Config) {
			c.Registry = json.RawMessage(`"` + strings.Repeat("a", 16<<10) + `"`)
		}), "config.registry"},
		{"config bad created_by", config(func(c *Config) { c.CreatedBy = "root" }), "config.created_by"},

		{"assignment ok", Assignment{ConfigID: vID1, UserID: vID2}.Validate, ""},
		{"assignment no user", Assignment{ConfigID: vID1}.Validate, "assignment.user_id"},
		{"instance key ok", func() error { return ValidateInstanceKey(ScopeOrg, vID1, vID2, vID1, vID2) }, ""},
		{"instance key scope", func() error { return ValidateInstanceKey("x", vID1, vID2, vID1, vID2) }, "instance.owner_scope"},
		{"instance key new id", func() error { return ValidateInstanceKey(ScopeOrg, vID1, vID2, vID1, "") }, "instance.id"},

		{"grant ok", grant(func(*Grant) {}), ""},
		{"grant lower bearer ok", grant(func(g *Grant) { g.TokenType = "bearer" }), ""},
		{"grant mac", grant(func(g *Grant) { g.TokenType = "MAC" }), "grant.token_type"},
		{"grant no access", grant(func(g *Grant) { g.AccessToken = nil }), "grant.access_token"},
		{"grant huge access", grant(func(g *Grant) { g.AccessToken = big(64<<10 + 1) }), "grant.access_token"},
		{"grant huge refresh", grant(func(g *Grant) { g.RefreshToken = big(64<<10 + 1) }), "grant.refresh_token"},
		{"provider registration version 0", ProviderRegistration{ConfigID: vID1, Ciphertext: []byte("x")}.Validate, "provider_registration.config_version"},
		{"provider registration ok", ProviderRegistration{ConfigID: vID1, ConfigVersion: 1, Ciphertext: []byte("x")}.Validate, ""},
		{"pending ok", PendingProviderState{StateHash: vHash, UserID: vID1, ConfigID: vID2, ConfigVersion: 1, Ciphertext: []byte("x"), ExpiresAt: vNow}.Validate, ""},
		{"pending no ct", PendingProviderState{StateHash: vHash, UserID: vID1, ConfigID: vID2, ConfigVersion: 1, ExpiresAt: vNow}.Validate, "pending_state.ciphertext"},
		{"pending bad instance", PendingProviderState{StateHash: vHash, UserID: vID1, ConfigID: vID2, ConfigVersion: 1, InstanceID: "x", Ciphertext: []byte("x"), ExpiresAt: vNow}.Validate, "pending_state.instance_id"},

		{"client ok", client(func(*OAuthClient) {}), ""},
		{"client cimd id ok", client(func(c *OAuthClient) { c.ID = "https://app.example/client.json" }), ""},
		{"client id no namespace", client(func(c *OAuthClient) { c.ID = "abc" }), "client_id"},
		{"client id upper namespace", client(func(c *OAuthClient) { c.ID = "DCR:abc" }), "client_id"},
		{"client id space", client(func(c *OAuthClient) { c.ID = "dcr:a b" }), "client_id"},
		{"client no redirect", client(func(c *OAuthClient) { c.RedirectURIs = nil }), "client.redirect_uris"},
		{"client redirect fragment", client(func(c *OAuthClient) { c.RedirectURIs = []string{"https://a/cb#x"} }), "client.redirect_uris"},
		{"client redirect relative", client(func(c *OAuthClient) { c.RedirectURIs = []string{"/cb"} }), "client.redirect_uris"},
		{"client bad method", client(func(c *OAuthClient) { c.TokenEndpointAuthMethod = "private_key_jwt" }), "client.token_endpoint_auth_method"},
		{"client public with secret", client(func(c *OAuthClient) { c.SecretHash = vHash }), "client.secret_hash"},
		{"client confidential without secret", client(func(c *OAuthClient) { c.TokenEndpointAuthMethod = "client_secret_basic" }), "client.secret_hash"},
		{"client confidential ok", client(func(c *OAuthClient) { c.TokenEndpointAuthMethod, c.SecretHash = "client_secret_post", vHash }), ""},
		{"client metadata bad", client(func(c *OAuthClient) { c.Metadata = json.RawMessage("nope") }), "client.metadata"},
		{"client too many scopes", client(func(c *OAuthClient) { c.Scope = strings.Repeat("s ", 21) }), "client.scope"},
		{"client reg token short", client(func(c *OAuthClient) { c.RegistrationTokenHash = big(5) }), "client.registration_token_hash"},

		{"auth request ok", AuthRequest{ID: "req_1", ClientID: "dcr:x", RedirectURI: "https://a/cb", Resource: "https://gw/r",
			Scopes: []string{"mcp:access"}, CodeChallenge: vPKCE, ConfigID: vID1, RouteKey: vKey, OwnerScope: ScopeUser,
			OwnerID: vID2, ExpiresAt: vNow}.Validate, ""},
		{"auth request plain pkce", AuthRequest{ID: "req_1", ClientID: "dcr:x", RedirectURI: "https://a/cb", Resource: "https://gw/r",
			Scopes: []string{"mcp:access"}, CodeChallenge: "short", ConfigID: vID1, RouteKey: vKey, OwnerScope: ScopeUser,
			OwnerID: vID2, ExpiresAt: vNow}.Validate, "auth_request.code_challenge"},
		{"auth request bad id", AuthRequest{ID: "a/b"}.Validate, "auth_request.id"},
		{"consent ok", ConsentTicket{Hash: vHash, AuthRequestID: "r", UserID: vID1, ClientID: "dcr:x", RedirectURI: "https://a/cb",
			Resource: "https://gw/r", CodeChallenge: vPKCE, ExecutionContext: "org:" + vID2, ExpiresAt: vNow}.Validate, ""},
		{"consent bad context", ConsentTicket{Hash: vHash, AuthRequestID: "r", UserID: vID1, ClientID: "dcr:x", RedirectURI: "https://a/cb",
			Resource: "https://gw/r", CodeChallenge: vPKCE, ExecutionContext: "org:acme", ExpiresAt: vNow}.Validate, "consent_ticket.execution_context"},
		{"code ok", code(func(*AuthCode) {}), ""},
		{"code no hash", code(func(c *AuthCode) { c.Hash = nil }), "auth_code.hash"},
		{"code short route key", code(func(c *AuthCode) { c.RouteKey = "abc" }), "auth_code.route_key"},
		{"code route key bad char", code(func(c *AuthCode) { c.RouteKey = strings.Repeat("/", 32) }), "auth_code.route_key"},
		{"code version 0", code(func(c *AuthCode) { c.ConfigVersion = 0 }), "auth_code.config_version"},
		{"code no expiry", code(func(c *AuthCode) { c.ExpiresAt = time.Time{} }), "auth_code.expires_at"},
		{"code too many scopes", code(func(c *AuthCode) { c.Scopes = manyScopes }), "auth_code.scopes"},
		{"code resource not url", code(func(c *AuthCode) { c.Resource = "urn:x" }), "auth_code.resource"},
		{"refresh ok", RefreshToken{Hash: vHash, FamilyID: "fam", ClientID: "dcr:x", UserID: vID1, InstanceID: vID2, ConfigID: vID1,
			Resource: "https://gw/r", Scopes: []string{"mcp:access"}, ExecutionContext: "personal", ConfigVersion: 1, ExpiresAt: vNow}.Validate, ""},
		{"refresh no config version", RefreshToken{Hash: vHash, FamilyID: "fam", ClientID: "dcr:x", UserID: vID1, InstanceID: vID2, ConfigID: vID1,
			Resource: "https://gw/r", Scopes: []string{"mcp:access"}, ExecutionContext: "personal", ExpiresAt: vNow}.Validate, "refresh_token.config_version"},
		{"refresh no family", RefreshToken{Hash: vHash}.Validate, "refresh_token.family_id"},

		{"audit ok", audit(func(*AuditEvent) {}), ""},
		{"audit no type", audit(func(e *AuditEvent) { e.Type = "" }), "audit.type"},
		{"audit bad actor", audit(func(e *AuditEvent) { e.ActorUserID = "admin" }), "audit.actor_user_id"},
		{"audit odd client id kept", audit(func(e *AuditEvent) { e.ClientID = "not a client id" }), ""},
		{"audit client id control", audit(func(e *AuditEvent) { e.ClientID = "dcr:x\nforged" }), "audit.client_id"},
		{"audit bad scope", audit(func(e *AuditEvent) { e.OwnerScope = "x" }), "audit.owner_scope"},
		{"audit huge metadata", audit(func(e *AuditEvent) { e.Metadata = map[string]string{"k": strings.Repeat("v", 16<<10)} }), "audit.metadata"},
		{"audit empty metadata key", audit(func(e *AuditEvent) { e.Metadata = map[string]string{"": "v"} }), "audit.metadata"},
		{"filter ok", AuditFilter{Limit: 1000}.Validate, ""},
		{"filter limit", AuditFilter{Limit: 1001}.Validate, "filter.limit"},
		{"filter negative limit", AuditFilter{Limit: -1}.Validate, "filter.limit"},
		{"filter before", AuditFilter{Before: -1}.Validate, "filter.before"},
		{"filter window", AuditFilter{Since: vNow, Until: vNow.Add(-time.Second)}.Validate, "filter.until"},
		{"filter bad user", AuditFilter{UserID: "u"}.Validate, "filter.user_id"},

		{"runtime ok", rq(func(*RuntimeQuery) {}), ""},
		{"runtime other context is not an input error", rq(func(q *RuntimeQuery) { q.ExecutionContext = "personal" }), ""},
		{"runtime no context", rq(func(q *RuntimeQuery) { q.ExecutionContext = "" }), "runtime.execution_context"},
		{"runtime bad key", rq(func(q *RuntimeQuery) { q.RouteKey = "k" }), "runtime.route_key"},
		{"runtime version 0", rq(func(q *RuntimeQuery) { q.ConfigVersion = 0 }), "runtime.config_version"},
		{"runtime no instance", rq(func(q *RuntimeQuery) { q.InstanceID = "" }), "runtime.instance_id"},

		{"rate ok", func() error { return ValidateRateLimit("register:1.2.3.4", time.Minute, 10, vNow) }, ""},
		{"rate no key", func() error { return ValidateRateLimit("", time.Minute, 10, vNow) }, "key"},
		{"rate zero window", func() error { return ValidateRateLimit("k", 0, 10, vNow) }, "window"},
		{"rate zero limit", func() error { return ValidateRateLimit("k", time.Minute, 0, vNow) }, "limit"},
		{"rate zero now", func() error { return ValidateRateLimit("k", time.Minute, 1, time.Time{}) }, "now"},
		{"user status deleted", func() error { return ValidateUserStatusChange(UserDeleted) }, "status"},
		{"user status blocked", func() error { return ValidateUserStatusChange(UserBlocked) }, ""},
		{"config status deleted", func() error { return ValidateConfigStatusChange(ConfigDeleted) }, "status"},
		{"end state active", func() error { return ValidateEndState(InstanceActive) }, "state"},
		{"end state removed", func() error { return ValidateEndState(InstanceRemoved) }, ""},
		{"expect version -2", func() error { return ValidateExpectVersion(-2) }, "expect_version"},
		{"expect version -1", func() error { return ValidateExpectVersion(-1) }, ""},
		{"lock name empty", func() error { return ValidateLockName("") }, "name"},
		{"oidc no subject", func() error { return ValidateOIDCIdentity("https://idp", "") }, "oidc_subject"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid for %s, got %v", tc.field, err)
			}
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Field != tc.field {
				t.Fatalf("want field %q, got %v", tc.field, err)
			}
		})
	}
}

// TestValidateNeverEchoesValues plants a secret-looking value in rejected
// inputs and checks the error text does not contain it (DESIGN §9).
func TestValidateNeverEchoesValues(t *testing.T) {
	const secret = "SECRET-planted-value-9f8e7d"
	errs := []error{
		User{ID: secret}.Validate(),
		User{ID: vID1, Email: secret}.Validate(),
		Config{ID: vID1, OwnerScope: ScopeUser, OwnerID: vID2, Name: "n", RemoteURL: "https://x/" + secret + "#f"}.Validate(),
		Config{ID: vID1, OwnerScope: ScopeUser, OwnerID: vID2, Name: "n", RemoteURL: "https://x/", AuthMode: AuthNone,
			SharingMode: SingleUser, AuxHeaders: map[string]string{"x": secret + "\n"}}.Validate(),
		ValidateClientID(secret + " x"),
		ValidateRouteKey("k", secret+"/"),
		RuntimeQuery{ConfigID: secret}.Validate(),
		ValidateRateLimit(secret, 0, 1, vNow),
	}
	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: want an error", i)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("case %d: error echoes the value: %v", i, err)
		}
	}
}
