package oauthserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"mcpgw/domain/secrets"
	"mcpgw/store"
)

// Cookie names. The __Host- prefix pins them to this host, path "/" and
// Secure (RFC 6265bis §4.1.3.2). Go's cookie jar and browsers treat
// loopback http as a secure origin, so Secure is always set, also in
// dev and tests.
const (
	sessionCookie   = "__Host-mcpgw_session"
	loginCSRFCookie = "__Host-mcpgw_login"
	oidcCookie      = "__Host-mcpgw_oidc"
	// CSRFHeader carries the CSRF token on session-authenticated API
	// requests that change state.
	CSRFHeader = "X-CSRF-Token"
)

// ErrUnauthenticated is returned by Authenticate when the request carries
// no valid credential; ErrCSRF when a session request lacks its CSRF token.
var (
	ErrUnauthenticated = errors.New("oauthserver: unauthenticated")
	ErrCSRF            = errors.New("oauthserver: missing or invalid CSRF token")
)

// sessionInfo is the authenticated browser session of a request.
type sessionInfo struct {
	raw  string // the cookie value (never logged)
	sess store.Session
	user store.User
}

// csrfFor derives the session's CSRF token from the session secret, so
// only its hash is stored (Session.CSRFHash) and nothing else is kept.
func csrfFor(rawSession string) string {
	m := hmac.New(sha256.New, []byte(rawSession))
	m.Write([]byte("mcpgw csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int(maxAge.Seconds())
	} else {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// newSession creates a server-side session for u and sets its cookie. Any
// session the browser already had is revoked (no fixation).
func (s *Server) newSession(w http.ResponseWriter, r *http.Request, u store.User) error {
	now := s.clock()
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		_ = s.st.RevokeSession(r.Context(), secrets.Hash(c.Value), now)
	}
	raw := secrets.NewToken(prefixSession)
	sess := store.Session{
		IDHash:    secrets.Hash(raw),
		UserID:    u.ID,
		CSRFHash:  secrets.Hash(csrfFor(raw)),
		CreatedAt: now,
		ExpiresAt: now.Add(s.sessionTTL),
	}
	if err := s.st.CreateSession(r.Context(), sess); err != nil {
		return err
	}
	setCookie(w, sessionCookie, raw, s.sessionTTL)
	return nil
}

// session returns the request's live session and its non-deleted user, or
// ErrUnauthenticated.
func (s *Server) session(r *http.Request) (*sessionInfo, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || !strings.HasPrefix(c.Value, prefixSession) {
		return nil, ErrUnauthenticated
	}
	ctx := r.Context()
	sess, err := s.st.GetSession(ctx, secrets.Hash(c.Value), s.clock())
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		return nil, ErrUnauthenticated
	}
	u, err := s.st.GetUser(ctx, sess.UserID)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		return nil, ErrUnauthenticated
	}
	if u.Status == store.UserDeleted {
		return nil, ErrUnauthenticated
	}
	return &sessionInfo{raw: c.Value, sess: sess, user: u}, nil
}

// checkCSRF compares a presented CSRF token with the session's, in
// constant time.
func (si *sessionInfo) checkCSRF(presented string) bool {
	if presented == "" {
		return false
	}
	return secrets.Equal(secrets.Hash(presented), si.sess.CSRFHash)
}

// Principal is who an API request acts for.
type Principal struct {
	User store.User
	// Via is "api_token" or "session".
	Via string
	// APITokenID is set when Via is "api_token".
	APITokenID string
}

// Authenticate authenticates a management API request (DESIGN §7): a
// personal API token (Authorization: Bearer mgw_..., looked up by hash) or
// the browser session cookie, in which case every method other than GET,
// HEAD and OPTIONS must carry the session's CSRF token in X-CSRF-Token.
// Blocked, provisional and deleted users are refused. Errors:
// ErrUnauthenticated, ErrCSRF, or a store.ErrUnavailable wrap.
func (s *Server) Authenticate(r *http.Request) (Principal, error) {
	ctx := r.Context()
	if len(r.Header.Values("Authorization")) > 0 {
		tok, ok := bearerToken(r)
		if !ok || !strings.HasPrefix(tok, PrefixAPIToken) {
			return Principal{}, ErrUnauthenticated
		}
		at, err := s.st.GetAPITokenByHash(ctx, secrets.Hash(tok), s.clock())
		if err != nil {
			if errors.Is(err, store.ErrUnavailable) {
				return Principal{}, err
			}
			return Principal{}, ErrUnauthenticated
		}
		u, err := s.st.GetUser(ctx, at.UserID)
		if err != nil {
			if errors.Is(err, store.ErrUnavailable) {
				return Principal{}, err
			}
			return Principal{}, ErrUnauthenticated
		}
		if u.Status != store.UserActive {
			return Principal{}, ErrUnauthenticated
		}
		return Principal{User: u, Via: "api_token", APITokenID: at.ID}, nil
	}
	si, err := s.session(r)
	if err != nil {
		return Principal{}, err
	}
	if si.user.Status != store.UserActive {
		return Principal{}, ErrUnauthenticated
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !si.checkCSRF(r.Header.Get(CSRFHeader)) {
			return Principal{}, ErrCSRF
		}
	}
	return Principal{User: si.user, Via: "session"}, nil
}

// CSRFToken returns the CSRF token of the request's session ("" without a
// session), for management pages that render forms.
func (s *Server) CSRFToken(r *http.Request) string {
	si, err := s.session(r)
	if err != nil {
		return ""
	}
	return csrfFor(si.raw)
}
