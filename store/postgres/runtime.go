package postgres

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"mcpgw/store"
)

// resolveSQL is the runtime recheck (DESIGN §6 step 6) as ONE statement, so
// it costs one round trip: it is prepared once per connection
// (resolveStmt) and afterwards each call sends only Bind/Execute/Sync.
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

// resolveStmt names the prepared resolveSQL on every pooled connection.
// ResolveRuntime bypasses pgx's generic Query/Scan path (see
// runtime_decode.go): it prepares the statement once per connection under
// this name (pgx caches it; later calls are a map lookup), then sends only
// Bind/Execute/Sync (no Describe) with binary uuid parameters and asks for every result
// column in binary.
const resolveStmt = "mcpgw_resolve_runtime"

// binaryFormat is one format code, which the protocol applies to every
// parameter or every result column.
var binaryFormat = []int16{1}

// runtimeAux caches parsed aux_headers documents for every Store.
var runtimeAux auxCache

// prepareResolve makes sure resolveStmt exists on the connection and that
// the server describes it exactly as the decoder expects: three uuid
// parameters and the resolveOIDs columns. A mismatch (resolveSQL edited
// without the decoder, a schema change) fails closed.
//
// The returned description is executed with ExecStatement, which sends no
// Describe: the server then does not repeat the 26-column RowDescription
// on every call, and pgconn does not rebuild it.
func prepareResolve(ctx context.Context, c *pgx.Conn) (*pgconn.StatementDescription, error) {
	sd, err := c.Prepare(ctx, resolveStmt, resolveSQL)
	if err != nil {
		return nil, err
	}
	if len(sd.ParamOIDs) != 3 || len(sd.Fields) != len(resolveOIDs) {
		return nil, fmt.Errorf("%w: statement has %d parameters, %d columns", errRuntimeRow, len(sd.ParamOIDs), len(sd.Fields))
	}
	for _, oid := range sd.ParamOIDs {
		if oid != pgtype.UUIDOID {
			return nil, fmt.Errorf("%w: parameter type %d", errRuntimeRow, oid)
		}
	}
	for i, fd := range sd.Fields {
		if fd.DataTypeOID != resolveOIDs[i] {
			return nil, fmt.Errorf("%w: column %d has type %d, want %d", errRuntimeRow, i, fd.DataTypeOID, resolveOIDs[i])
		}
	}
	return sd, nil
}

// runtimeIDs are the query's ids as 16-byte values: the statement's
// binary parameters and the operands of runtimeDecide's comparisons.
type runtimeIDs struct {
	config, user, instance, owner uuid.UUID
}

// parseRuntimeIDs converts validated ids (store.ValidID) without failing.
func parseRuntimeIDs(q store.RuntimeQuery) (ids runtimeIDs) {
	ids.config, _ = uuid.Parse(q.ConfigID)
	ids.user, _ = uuid.Parse(q.UserID)
	ids.instance, _ = uuid.Parse(q.InstanceID)
	ids.owner, _ = uuid.Parse(q.OwnerID)
	return ids
}

// params returns the three statement parameters ($1 config, $2 user,
// $3 instance) in binary.
func (ids *runtimeIDs) params() [][]byte {
	return [][]byte{ids.config[:], ids.user[:], ids.instance[:]}
}

// readRuntime reads the at most one row of an executed resolveStmt and
// applies the rules. Every error is a database or protocol failure.
func readRuntime(rr *pgconn.ResultReader, q store.RuntimeQuery, ids *runtimeIDs) (store.RuntimeState, error) {
	var (
		f     runtimeFacts
		st    store.RuntimeState
		rows  int
		dfail error
	)
	for rr.NextRow() {
		rows++
		if rows == 1 {
			if dfail = f.decode(rr.Values()); dfail == nil {
				// aux points into the read buffer: decide before the
				// next read.
				st, dfail = runtimeDecide(q, ids, &f)
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return store.RuntimeState{}, err
	}
	switch {
	case dfail != nil:
		return store.RuntimeState{}, dfail
	case rows == 0:
		return store.RuntimeState{Reason: store.ReasonRouteNotFound}, nil
	case rows > 1: // impossible: configs.id is the primary key
		return store.RuntimeState{}, fmt.Errorf("%w: %d rows", errRuntimeRow, rows)
	}
	return st, nil
}

// ResolveRuntime proves the runtime rules in one round trip and names the
// first failing one.
func (s *Store) ResolveRuntime(ctx context.Context, q store.RuntimeQuery) (store.RuntimeState, error) {
	if err := q.Validate(); err != nil {
		return store.RuntimeState{}, err
	}
	ids := parseRuntimeIDs(q)
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return store.RuntimeState{}, mapErr("resolve runtime", err)
	}
	defer c.Release()
	sd, err := prepareResolve(ctx, c.Conn())
	if err != nil {
		return store.RuntimeState{}, mapErr("resolve runtime", err)
	}
	rr := c.Conn().PgConn().ExecStatement(ctx, sd, ids.params(), binaryFormat, binaryFormat)
	st, err := readRuntime(rr, q, &ids)
	if err != nil {
		return store.RuntimeState{}, mapErr("resolve runtime", err)
	}
	return st, nil
}

// runtimeDecide applies the rules of Store.ResolveRuntime in order.
func runtimeDecide(q store.RuntimeQuery, ids *runtimeIDs, f *runtimeFacts) (store.RuntimeState, error) {
	qOwner, qUser, qConfig := ids.owner, ids.user, ids.config
	deny := func(r store.Reason) (store.RuntimeState, error) {
		return store.RuntimeState{Reason: r, Checked: f.now}, nil
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
	case !executionContextIs(q.ExecutionContext, scope, f.owner):
		return deny(store.ReasonContextMismatch)
	}
	if !f.hasUser {
		return deny(store.ReasonUserNotFound)
	}
	switch store.UserStatus(f.userStatus) {
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
	if !f.hasInstance {
		return deny(store.ReasonInstanceNotFound)
	}
	if f.iUser != qUser || f.iConfig != qConfig || f.iScope != f.scope || f.iOwner != f.owner {
		return deny(store.ReasonInstanceMismatch)
	}
	if f.iState != string(store.InstanceActive) {
		return deny(store.ReasonInstanceNotActive)
	}
	mode := store.AuthMode(f.authMode)
	var grant *store.Grant
	if mode.IsOAuth() {
		if !f.hasGrant {
			return deny(store.ReasonGrantMissing)
		}
		grant = &store.Grant{InstanceID: q.InstanceID, Version: f.iGrantVersion, AccessToken: f.gAccess,
			RefreshToken: f.gRefresh, TokenType: f.gType, Scope: f.gScope, ExpiresAt: f.gExpires}
		if f.gUpdated != nil {
			grant.UpdatedAt = *f.gUpdated
		}
	}
	aux, err := runtimeAux.parse(f.aux)
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
		GrantVersion: f.iGrantVersion,
		Grant:        grant,
		Checked:      f.now,
	}
	return st, nil
}

// executionContextIs reports whether ec is store.ExecutionContext(scope,
// owner) with the owner in canonical (lower-case) text, without building
// the string.
func executionContextIs(ec string, scope store.OwnerScope, owner [16]byte) bool {
	if scope != store.ScopeOrg {
		return ec == "personal"
	}
	const prefix = "org:"
	if len(ec) != len(prefix)+36 || ec[:len(prefix)] != prefix {
		return false
	}
	var buf [36]byte
	encodeUUID(&buf, owner)
	return ec[len(prefix):] == string(buf[:])
}

// encodeUUID writes u in the canonical 8-4-4-4-12 lower-case form.
func encodeUUID(dst *[36]byte, u [16]byte) {
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hexDigits[b>>4], hexDigits[b&0x0f]
		j += 2
	}
}
