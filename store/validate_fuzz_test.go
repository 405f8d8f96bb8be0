package store

import (
	"errors"
	"testing"
)

// FuzzValidate feeds arbitrary strings to the validators that see
// unauthenticated input (registration, authorize, management API): they
// must never panic, and every rejection must be an *InvalidError.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"", "dcr:abc", "https://u:p@h/#f", "a@b", "org:" + vID1, "\x00\r\n", "ｆｕｌｌ", "%zz", "http://[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(err error) {
			if err == nil {
				return
			}
			var ie *InvalidError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection is not an *InvalidError: %v", err)
			}
		}
		check(ValidateClientID(s))
		check(ValidateEmail("email", s))
		check(ValidateRouteKey("k", s))
		check(ValidateOpaqueID("id", s))
		check(ValidateExecutionContext("ctx", s))
		check(ValidateRedirectURI("redirect_uri", s))
		check(ValidateScopes("scopes", []string{s}))
		check(Config{ID: vID1, OwnerScope: ScopeOrg, OwnerID: vID2, Name: s, RemoteURL: s, AuthMode: AuthNone,
			SharingMode: MultiUser, AuxHeaders: map[string]string{s: s}, Registry: []byte(s)}.Validate())
		check(OAuthClient{ID: s, RedirectURIs: []string{s}, TokenEndpointAuthMethod: s, Scope: s, Metadata: []byte(s)}.Validate())
		check(AuditEvent{Type: s, Metadata: map[string]string{s: s}}.Validate())
	})
}
