// Package api is the management API /api/v1 (DESIGN §7): users and their
// API tokens, orgs and members, configs (create, update with the material
// change cascade, enable/disable, delete, route rotation), assignments,
// instances, the caller's usable configs, and the audit query.
//
// It is mounted onto the oauthserver HTTP server and authenticates through
// oauthserver.Server.Authenticate: a personal API token (Authorization:
// Bearer mgw_...) or the browser session plus its CSRF token.
//
// Every answer is JSON. Every error has the one shape
//
//	{"error": {"code": "<stable code>", "message": "<human text>"}}
//
// and messages never echo secret values. Request bodies are size-capped and
// decoded with unknown fields rejected, so a typo is a 400 instead of a
// silently ignored setting. Every change goes through one store method, so
// the store's transaction holds the change, its cascade and its audit event
// together; a rejected request changes nothing.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mcpgw/domain/addrpolicy"
	"mcpgw/domain/secrets"
	"mcpgw/oauthserver"
	"mcpgw/store"
)

// Prefix is the path prefix of every endpoint of this package.
const Prefix = "/api/v1/"

// DefaultMaxBodyBytes caps request bodies when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// Error codes: stable strings clients may switch on.
const (
	CodeInvalidRequest  = "invalid_request"  // 400: a field is wrong; the message says which
	CodeInvalidJSON     = "invalid_json"     // 400: the body is not the JSON object expected
	CodeUnknownField    = "unknown_field"    // 400: the body has a field this endpoint does not take
	CodeBodyTooLarge    = "body_too_large"   // 400: the body exceeds the cap
	CodeUnauthenticated = "unauthenticated"  // 401
	CodeCSRF            = "csrf"             // 403: session request without its CSRF token
	CodeForbiddenOrigin = "forbidden_origin" // 403: session request from an Origin that is not allowed
	CodeForbidden       = "forbidden"        // 403: authenticated but not allowed
	CodeNotFound        = "not_found"        // 404: unknown, or not visible to the caller
	CodeConflict        = "conflict"         // 409: the current state forbids it
	CodeUnavailable     = "unavailable"      // 503: the database is unreachable (fail closed)
	CodeInternal        = "internal"         // 500
)

// Authenticator authenticates one request; oauthserver.Server.Authenticate
// is the implementation. Errors: oauthserver.ErrUnauthenticated,
// oauthserver.ErrCSRF, or an infrastructure error.
type Authenticator func(*http.Request) (oauthserver.Principal, error)

// Options configure a Handler. Store and Authenticate are required.
type Options struct {
	Store        store.Store
	Authenticate Authenticator
	// KeyRing seals static header values and provider client credentials
	// (DESIGN §9). nil: configs carrying either are refused.
	KeyRing *secrets.KeyRing
	// PublicBaseURL builds connect URLs (DESIGN §2 canonical resource).
	PublicBaseURL string
	// Allowlist is the dev/test exception to the public-address policy
	// (DESIGN §6); zero: none (production).
	Allowlist addrpolicy.Allowlist
	// Resolver resolves remote URL hosts; nil: net.DefaultResolver.
	Resolver addrpolicy.Resolver
	// MaxBodyBytes caps request bodies; 0: DefaultMaxBodyBytes.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Registry receives the request metrics; nil: not registered.
	Registry prometheus.Registerer
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// AllowedOrigins are browser origins (scheme://host[:port]) accepted
	// on session-authenticated requests besides PublicBaseURL's own
	// (config allowed_origins). A session request whose Origin is anything
	// else is refused before any work (defense in depth next to the CSRF
	// token and SameSite=Lax).
	AllowedOrigins []string
}

// Handler serves /api/v1. Create it with New.
type Handler struct {
	o       Options
	st      store.Store
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	maxBody int64
	reqs    *prometheus.CounterVec
}

// New validates opts and returns the handler.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil || opts.Authenticate == nil {
		return nil, errors.New("api: Store and Authenticate are required")
	}
	h := &Handler{o: opts, st: opts.Store, log: opts.Logger, now: opts.Now, maxBody: opts.MaxBodyBytes}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "api")
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	h.o.PublicBaseURL = strings.TrimRight(h.o.PublicBaseURL, "/")
	h.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgw_api_requests_total",
		Help: "Management API requests by operation and HTTP status class.",
	}, []string{"op", "code"})
	if opts.Registry != nil {
		if err := opts.Registry.Register(h.reqs); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("api: metrics: %w", err)
			}
			h.reqs = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	h.mux = http.NewServeMux()
	h.routes()
	return h, nil
}

// Mounter is the part of *oauthserver.Server that Mount needs.
type Mounter interface {
	Mount(pattern string, h http.Handler) error
}

// Mount attaches the handler to the shared HTTP server under Prefix. More
// specific patterns the server already owns (POST /api/v1/connect-tokens)
// keep winning.
func (h *Handler) Mount(m Mounter) error { return m.Mount(Prefix, h) }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// route is one endpoint. Handlers return the status and body to send, or
// an error (an *Error or a store error) that writeErr maps.
type route struct {
	pattern, op string
	fn          func(r *http.Request, p oauthserver.Principal) (int, any, error)
}

func (h *Handler) routes() {
	for _, rt := range h.endpoints() {
		h.mux.Handle(rt.pattern, h.wrap(rt.op, rt.fn))
	}
	h.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		h.reqs.WithLabelValues("unknown", "4xx").Inc()
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such endpoint"})
	})
}

// endpoints is the API surface, one line per operation (the README API
// reference and the CLI mirror this table).
func (h *Handler) endpoints() []route {
	return []route{
		{"GET /api/v1/me", "me", h.me},

		{"POST /api/v1/users", "user_create", h.createUser},
		{"GET /api/v1/users", "user_list", h.listUsers},
		{"GET /api/v1/users/{id}", "user_get", h.getUser},
		{"POST /api/v1/users/{id}/block", "user_block", h.blockUser},
		{"POST /api/v1/users/{id}/unblock", "user_unblock", h.unblockUser},
		{"DELETE /api/v1/users/{id}", "user_delete", h.deleteUser},
		{"POST /api/v1/users/{id}/tokens", "token_create", h.createToken},
		{"GET /api/v1/users/{id}/tokens", "token_list", h.listTokens},
		{"DELETE /api/v1/users/{id}/tokens/{token}", "token_revoke", h.revokeToken},

		{"POST /api/v1/orgs", "org_create", h.createOrg},
		{"GET /api/v1/orgs", "org_list", h.listOrgs},
		{"GET /api/v1/orgs/{id}", "org_get", h.getOrg},
		{"GET /api/v1/orgs/{id}/members", "member_list", h.listMembers},
		{"POST /api/v1/orgs/{id}/members", "member_add", h.addMember},
		{"PATCH /api/v1/orgs/{id}/members/{user}", "member_role", h.setMemberRole},
		{"DELETE /api/v1/orgs/{id}/members/{user}", "member_remove", h.removeMember},
		{"GET /api/v1/orgs/{id}/instances", "org_instances", h.listOrgInstances},

		{"POST /api/v1/configs", "config_create", h.createConfig},
		{"GET /api/v1/configs", "config_list", h.listConfigs},
		{"GET /api/v1/configs/{id}", "config_get", h.getConfig},
		{"PATCH /api/v1/configs/{id}", "config_update", h.updateConfig},
		{"POST /api/v1/configs/{id}/enable", "config_enable", h.enableConfig},
		{"POST /api/v1/configs/{id}/disable", "config_disable", h.disableConfig},
		{"DELETE /api/v1/configs/{id}", "config_delete", h.deleteConfig},
		{"POST /api/v1/configs/{id}/rotate-route", "route_rotate", h.rotateRoute},
		{"GET /api/v1/configs/{id}/assignments", "assignment_list", h.listAssignments},
		{"POST /api/v1/configs/{id}/assignments", "assign", h.assign},
		{"DELETE /api/v1/configs/{id}/assignments/{user}", "unassign", h.unassign},

		{"GET /api/v1/available", "available", h.available},
		{"GET /api/v1/instances", "instance_list", h.listMyInstances},
		{"DELETE /api/v1/instances/{id}", "instance_revoke", h.revokeInstance},

		{"GET /api/v1/audit", "audit", h.audit},
	}
}

// wrap authenticates, runs fn and writes its answer.
func (h *Handler) wrap(op string, fn func(*http.Request, oauthserver.Principal) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body, err := h.serve(r, fn)
		if err != nil {
			e := h.toError(r.Context(), op, err)
			status = e.Status
			writeError(w, e)
		} else {
			writeJSON(w, status, body)
		}
		h.reqs.WithLabelValues(op, fmt.Sprintf("%dxx", status/100)).Inc()
	})
}

func (h *Handler) serve(r *http.Request, fn func(*http.Request, oauthserver.Principal) (int, any, error)) (int, any, error) {
	p, err := h.o.Authenticate(r)
	if err != nil {
		switch {
		case errors.Is(err, oauthserver.ErrCSRF):
			return 0, nil, &Error{Status: http.StatusForbidden, Code: CodeCSRF, Message: "missing or invalid CSRF token (send it in " + oauthserver.CSRFHeader + ")"}
		case errors.Is(err, oauthserver.ErrUnauthenticated):
			return 0, nil, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: "authentication required: send Authorization: Bearer <API token> or a session cookie"}
		}
		return 0, nil, err
	}
	if p.Via == "session" {
		if o := r.Header.Get("Origin"); o != "" && !h.originAllowed(o) {
			return 0, nil, &Error{Status: http.StatusForbidden, Code: CodeForbiddenOrigin, Message: "this Origin may not use the browser session"}
		}
	}
	return fn(r, p)
}

// originAllowed reports whether a browser Origin may use the session.
func (h *Handler) originAllowed(o string) bool {
	if o == originOf(h.o.PublicBaseURL) {
		return true
	}
	for _, a := range h.o.AllowedOrigins {
		if o == strings.TrimRight(a, "/") {
			return true
		}
	}
	return false
}

func originOf(base string) string {
	i := strings.Index(base, "://")
	if i < 0 {
		return base
	}
	if j := strings.IndexByte(base[i+3:], '/'); j >= 0 {
		return base[:i+3+j]
	}
	return base
}

// Error is an API error answer. Message is fixed text chosen by this
// package (or a field name and rule); it never holds a request value that
// could be secret.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...)}
}

var (
	errForbidden = &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: "you are not allowed to do this"}
	errNotFound  = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "not found"}
)

func conflict(msg string) *Error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: msg}
}

// toError maps any error to an API answer. Store validation errors are the
// caller's fault (400, naming the field); infrastructure errors fail closed
// (503) and are logged without request data.
func (h *Handler) toError(ctx context.Context, op string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var inv *store.InvalidError
	switch {
	case errors.As(err, &inv):
		return badRequest("invalid %s: %s", inv.Field, inv.Reason)
	case errors.Is(err, store.ErrInvalid):
		return badRequest("invalid input")
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case errors.Is(err, store.ErrConflict):
		return conflict("the current state does not allow this change")
	case errors.Is(err, store.ErrUnavailable):
		h.log.ErrorContext(ctx, "store unavailable", "op", op, "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the service is temporarily unavailable"}
	}
	h.log.ErrorContext(ctx, "internal error", "op", op, "err", err)
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, e *Error) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = e.Code, e.Message
	writeJSON(w, e.Status, b)
}

// decode reads one JSON object from the capped body into v, rejecting
// unknown fields and trailing data.
func (h *Handler) decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "Content-Type must be application/json"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.maxBody+1))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "could not read the request body"}
	}
	if int64(len(body)) > h.maxBody {
		return &Error{Status: http.StatusBadRequest, Code: CodeBodyTooLarge, Message: fmt.Sprintf("the request body exceeds %d bytes", h.maxBody)}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &Error{Status: http.StatusBadRequest, Code: CodeUnknownField, Message: "unknown field " + sanitizeField(f)}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "field " + sanitizeField(te.Field) + " has the wrong type"}
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "the body is not a valid JSON object"}
	}
	if dec.More() {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "the body must hold exactly one JSON object"}
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "the body must hold exactly one JSON object"}
	}
	return nil
}

// sanitizeField keeps a field name printable and short: it is echoed in the
// message, and a client could put anything there.
func sanitizeField(f string) string {
	f = strings.Trim(f, `"`)
	var b strings.Builder
	for _, c := range f {
		if b.Len() >= 64 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteRune('?')
		}
	}
	return `"` + b.String() + `"`
}

// pathID returns a path parameter that must be a UUID; anything else is a
// 404 (a malformed id names nothing).
func pathID(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if !store.ValidID(v) {
		return "", errNotFound
	}
	return v, nil
}

// audit events carry who acted and through which credential kind.
func actor(p oauthserver.Principal, typ string) *store.AuditEvent {
	return &store.AuditEvent{Type: typ, Outcome: "success", ActorUserID: p.User.ID, Metadata: map[string]string{"via": p.Via}}
}

// Routes lists every endpoint as "METHOD /path" (the README API reference
// and the CLI are checked against it by tests). POST /api/v1/connect-tokens
// is served by oauthserver on the same listener and is listed too.
func Routes() []string {
	h := &Handler{}
	var out []string
	for _, r := range h.endpoints() {
		out = append(out, r.pattern)
	}
	return append(out, "POST /api/v1/connect-tokens")
}
