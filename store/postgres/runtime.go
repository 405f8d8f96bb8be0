package postgres

import (
	"context"
	"crypto/subtle"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"mcpgw/store"
)

// resolveSQL is the runtime recheck (DESIGN §6 step 6) as ONE statement, so
// it costs one round trip: pgx's default QueryExecModeCacheStatement
// prepares it once per connection and afterwards sends only
// Bind/Execute/Sync.
//
// Every lookup is by primary key, so the cost does not grow with the data.
// The schema keeps the happy path at four lookups (three for personal
// configs) instead of a seven-table join:
//
//   - configs.active_route_key mirrors the key of the one active route
//     (written in the same transaction as every rotation), so routes is not
//     read;
//   - the provider grant lives on the instance row (00001_init.sql);
//   - an assignment row can exist only while its membership row does
//     (foreign key with ON DELETE CASCADE, 00002), so finding the
//     assignment proves membership and assignment together; org_members is
//     read only when there is no assignment, to tell not_member from
//     not_assigned. The CASE evaluates its subqueries lazily, in order.
//
// Nothing is inferred from the instance existing: user status, membership
// and assignment are read from their own rows on every call. The query
// returns raw facts; Go decides the first failing rule in the documented
// order (runtimeDecide), which keeps that order in one readable place.
//
// Ids come back as binary uuids (no ::text casts: formatting four uuids as
// text measurably slowed the statement) and are compared as 16-byte values.
//
// org_access: 0 personal config, 1 member not assigned, 2 not a member,
// 3 assigned (and therefore a member).
const resolveSQL = `SELECT now(),
	c.owner_scope, c.owner_id, c.status, c.active_route_key, c.version, c.auth_mode, c.path_passthrough,
	c.remote_url, c.static_headers, c.static_header_names, c.aux_headers,
	(SELECT u.status FROM users u WHERE u.id = $2),
	CASE
		WHEN c.owner_scope <> 'org' THEN 0
		WHEN EXISTS (SELECT 1 FROM assignments a WHERE a.config_id = c.id AND a.user_id = $2) THEN 3
		WHEN EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = c.owner_id AND m.user_id = $2) THEN 1
		ELSE 2
	END,
	i.owner_scope, i.owner_id, i.user_id, i.config_id, i.state, i.grant_version,
	i.grant_access_token, i.grant_refresh_token, i.grant_token_type, i.grant_scope, i.grant_expires_at, i.grant_updated_at
FROM configs c
LEFT JOIN instances i ON i.id = $3
WHERE c.id = $1`

// runtimeFacts is one row of resolveSQL.
type runtimeFacts struct {
	now                    time.Time
	scope, status, key     string
	owner                  [16]byte
	version                int64
	authMode               string
	passthrough            bool
	remoteURL              string
	staticHeaders          []byte
	staticNames            []string
	aux                    []byte
	userStatus             *string
	orgAccess              int32
	iScope                 *string
	iOwner, iUser, iConfig pgtype.UUID
	iState                 *string
	iGrantVersion          *int64
	gAccess, gRefresh      []byte
	gType, gScope          *string
	gExpires, gUpdated     *time.Time
}

// targets are the scan destinations of one resolveSQL row, in column
// order; every reader of resolveSQL scans through it so the two never
// drift apart.
func (f *runtimeFacts) targets() []any {
	return []any{&f.now, &f.scope, &f.owner, &f.status, &f.key, &f.version, &f.authMode, &f.passthrough,
		&f.remoteURL, &f.staticHeaders, &f.staticNames, &f.aux,
		&f.userStatus, &f.orgAccess,
		&f.iScope, &f.iOwner, &f.iUser, &f.iConfig, &f.iState, &f.iGrantVersion,
		&f.gAccess, &f.gRefresh, &f.gType, &f.gScope, &f.gExpires, &f.gUpdated}
}

// ResolveRuntime proves the runtime rules in one round trip and names the
// first failing one.
func (s *Store) ResolveRuntime(ctx context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	if err := q.Validate(); err != nil {
		return store.RuntimeState{}, err
	}
	var f runtimeFacts
	err := s.pool.QueryRow(ctx, resolveSQL, q.ConfigID, q.UserID, q.InstanceID).Scan(f.targets()...)
	if isNoRows(err) {
		return store.RuntimeState{Reason: store.ReasonRouteNotFound}, nil
	}
	if err != nil {
		return store.RuntimeState{}, mapErr("resolve runtime", err)
	}
	return runtimeDecide(q, &f)
}

// runtimeDecide applies the rules of Store.ResolveRuntime in order.
func runtimeDecide(q store.RuntimeQuery, f *runtimeFacts) (store.RuntimeState, error) {
	// The ids were validated (store.ValidID) before the query.
	qOwner, qUser, qConfig := uuid.MustParse(q.OwnerID), uuid.MustParse(q.UserID), uuid.MustParse(q.ConfigID)
	deny := func(r store.Reason) (store.RuntimeState, error) {
		return store.RuntimeState{Reason: r, Checked: utc(f.now)}, nil
	}
	scope := store.OwnerScope(f.scope)
	switch {
	case scope != q.OwnerScope || f.owner != qOwner:
		return deny(store.ReasonRouteNotFound)
	case f.status == string(store.ConfigDeleted):
		return deny(store.ReasonConfigDeleted)
	case subtle.ConstantTimeCompare([]byte(f.key), []byte(q.RouteKey)) != 1:
		return deny(store.ReasonRouteKeyMismatch)
	case f.status != string(store.ConfigEnabled):
		return deny(store.ReasonConfigDisabled)
	case f.version != q.ConfigVersion:
		return deny(store.ReasonVersionMismatch)
	case q.ExecutionContext != store.ExecutionContext(scope, uuid.UUID(f.owner).String()):
		return deny(store.ReasonContextMismatch)
	}
	if f.userStatus == nil {
		return deny(store.ReasonUserNotFound)
	}
	switch store.UserStatus(*f.userStatus) {
	case store.UserActive:
	case store.UserDeleted:
		return deny(store.ReasonUserDeleted)
	case store.UserBlocked:
		return deny(store.ReasonUserBlocked)
	case store.UserProvisional:
		return deny(store.ReasonUserProvisional)
	default:
		return deny(store.ReasonUserNotFound)
	}
	if scope == store.ScopeUser {
		if f.owner != qUser {
			return deny(store.ReasonNotOwner)
		}
	} else {
		switch f.orgAccess {
		case 3: // assigned; the foreign key proves membership
		case 1:
			return deny(store.ReasonNotAssigned)
		default:
			return deny(store.ReasonNotMember)
		}
	}
	if f.iState == nil {
		return deny(store.ReasonInstanceNotFound)
	}
	if f.iUser.Bytes != qUser || f.iConfig.Bytes != qConfig || *f.iScope != f.scope || f.iOwner.Bytes != f.owner {
		return deny(store.ReasonInstanceMismatch)
	}
	if *f.iState != string(store.InstanceActive) {
		return deny(store.ReasonInstanceNotActive)
	}
	mode := store.AuthMode(f.authMode)
	var grant *store.Grant
	if mode.IsOAuth() {
		if f.gType == nil {
			return deny(store.ReasonGrantMissing)
		}
		grant = &store.Grant{InstanceID: q.InstanceID, Version: *f.iGrantVersion, AccessToken: f.gAccess,
			TokenType: *f.gType, ExpiresAt: utcp(f.gExpires)}
		if len(f.gRefresh) > 0 {
			grant.RefreshToken = f.gRefresh
		}
		if f.gScope != nil {
			grant.Scope = *f.gScope
		}
		if f.gUpdated != nil {
			grant.UpdatedAt = utc(*f.gUpdated)
		}
	}
	aux, err := parseMap(f.aux)
	if err != nil {
		return store.RuntimeState{}, mapErr("resolve runtime", err)
	}
	st := store.RuntimeState{
		Config: store.RuntimeConfig{
			ID:                q.ConfigID,
			AuthMode:          mode,
			Version:           f.version,
			PathPassthrough:   f.passthrough,
			RemoteURL:         f.remoteURL,
			StaticHeaders:     f.staticHeaders,
			StaticHeaderNames: nilIfEmpty(f.staticNames),
			AuxHeaders:        aux,
		},
		InstanceID:   q.InstanceID,
		GrantVersion: *f.iGrantVersion,
		Grant:        grant,
		Checked:      utc(f.now),
	}
	if len(st.Config.StaticHeaders) == 0 {
		st.Config.StaticHeaders = nil
	}
	return st, nil
}
