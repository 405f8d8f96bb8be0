package provider

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"time"

	"mcpgw/domain/headers"
	"mcpgw/store"
)

// maxTokenLen bounds an upstream access or refresh token: anything longer
// is not a bearer token we are willing to store and inject.
const maxTokenLen = 16 << 10

// tokenSet is a validated token endpoint answer (RFC 6749 §5.1).
type tokenSet struct {
	AccessToken  string
	RefreshToken string
	Scope        string
	ExpiresAt    *time.Time
}

// tokenResponse is the wire shape. Numbers are decoded as json.Number so
// that a float or a huge value is rejected instead of silently truncated.
type tokenResponse struct {
	AccessToken  *string     `json:"access_token"`
	TokenType    *string     `json:"token_type"`
	ExpiresIn    json.Number `json:"expires_in"`
	RefreshToken *string     `json:"refresh_token"`
	Scope        *string     `json:"scope"`
	Error        string      `json:"error"`
}

// tokenRequest posts form to the token endpoint authenticating as c, and
// validates the answer: size-capped before parsing (fetcher), JSON,
// token_type Bearer only, a token that is a valid header value, a sane
// expiry (DESIGN §5). op is "token" or "refresh".
func (p *Provider) tokenRequest(ctx context.Context, op, endpoint string, c upstreamClient, form url.Values) (*tokenSet, error) {
	var user, pass string
	switch c.AuthMethod {
	case authBasic:
		user, pass = c.ID, c.Secret
	case authPost:
		form.Set("client_id", c.ID)
		form.Set("client_secret", c.Secret)
	default:
		form.Set("client_id", c.ID)
	}
	resp, err := p.f.postForm(ctx, op, endpoint, form, user, pass)
	if err != nil {
		return nil, err
	}
	var tr tokenResponse
	if resp.Status != 200 {
		e, _ := statusErr(op, resp.Status).(*Error)
		if e == nil {
			e = upErr(op, ReasonBadResponse, false)
		}
		if isJSON(resp.Header) && json.Unmarshal(resp.Body, &tr) == nil {
			e.OAuthError = sanitizeOAuthError(tr.Error)
		}
		return nil, e
	}
	if !isJSON(resp.Header) {
		return nil, upErr(op, ReasonBadResponse, false)
	}
	dec := json.NewDecoder(strings.NewReader(string(resp.Body)))
	dec.UseNumber()
	if err := dec.Decode(&tr); err != nil {
		return nil, upErr(op, ReasonBadResponse, false)
	}
	if tr.TokenType == nil || !strings.EqualFold(*tr.TokenType, "Bearer") {
		return nil, upErr(op, ReasonTokenType, false)
	}
	if tr.AccessToken == nil || !validToken(*tr.AccessToken) {
		return nil, upErr(op, ReasonBadResponse, false)
	}
	ts := &tokenSet{AccessToken: *tr.AccessToken}
	if tr.RefreshToken != nil {
		if !validToken(*tr.RefreshToken) {
			return nil, upErr(op, ReasonBadResponse, false)
		}
		ts.RefreshToken = *tr.RefreshToken
	}
	if tr.Scope != nil {
		if len(*tr.Scope) > store.MaxScopeStringLen || !printable(*tr.Scope) {
			return nil, upErr(op, ReasonBadResponse, false)
		}
		ts.Scope = *tr.Scope
	}
	if tr.ExpiresIn != "" {
		n, err := tr.ExpiresIn.Int64()
		if err != nil || n < 0 || n > math.MaxInt32 {
			return nil, upErr(op, ReasonBadResponse, false)
		}
		exp := p.now().UTC().Add(time.Duration(n) * time.Second)
		ts.ExpiresAt = &exp
	}
	return ts, nil
}

// validToken: non-empty, bounded, and injectable as "Bearer <token>"
// without header smuggling (DESIGN §6 step 8).
func validToken(s string) bool {
	return s != "" && len(s) <= maxTokenLen && printable(s) && !strings.ContainsAny(s, " \t") && headers.ValidValue("Bearer "+s)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
