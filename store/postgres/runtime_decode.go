package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Hand decoding of one resolveSQL row from the binary wire format.
//
// The runtime recheck runs on every proxied request, and profiling showed
// the generic pgx Query/Scan path spending as much client CPU as the round
// trip itself: per-call scan planning for 26 columns, a copied field
// description slice, reflection for the pointer-to-pointer targets and a
// jsonb unmarshal. The row's shape is fixed by resolveSQL and checked
// against the server's own statement description (resolveOIDs) before it
// is read, so decoding the raw column bytes directly is both cheaper and no
// less strict: anything unexpected (wrong length, NULL where the schema
// says NOT NULL, a NULL array element) is an error, never a default.
//
// Binary formats (PostgreSQL's send/recv functions): uuid = 16 bytes; int8
// / int4 = big-endian two's complement; bool = one byte; text and bytea =
// the bytes; timestamptz = int8 microseconds since 2000-01-01 00:00 UTC;
// jsonb = version byte 1 followed by the JSON text; one-dimensional text[] =
// ndim, has-null flag, element OID, (length, lower bound) per dimension,
// then (int4 length, bytes) per element.

// resolveOIDs are the result column types of resolveSQL, in order.
var resolveOIDs = [...]uint32{
	pgtype.TimestamptzOID, // now()
	pgtype.TextOID,        // c.owner_scope
	pgtype.UUIDOID,        // c.owner_id
	pgtype.TextOID,        // c.status
	pgtype.TextOID,        // c.active_route_key
	pgtype.Int8OID,        // c.version
	pgtype.TextOID,        // c.auth_mode
	pgtype.BoolOID,        // c.path_passthrough
	pgtype.TextOID,        // c.remote_url
	pgtype.ByteaOID,       // c.static_headers
	pgtype.TextArrayOID,   // c.static_header_names
	pgtype.JSONBOID,       // c.aux_headers
	pgtype.TextOID,        // users.status
	pgtype.Int4OID,        // org access CASE
	pgtype.TextOID,        // i.owner_scope
	pgtype.UUIDOID,        // i.owner_id
	pgtype.UUIDOID,        // i.user_id
	pgtype.UUIDOID,        // i.config_id
	pgtype.TextOID,        // i.state
	pgtype.Int8OID,        // i.grant_version
	pgtype.ByteaOID,       // i.grant_access_token
	pgtype.ByteaOID,       // i.grant_refresh_token
	pgtype.TextOID,        // i.grant_token_type
	pgtype.TextOID,        // i.grant_scope
	pgtype.TimestamptzOID, // i.grant_expires_at
	pgtype.TimestamptzOID, // i.grant_updated_at
}

// errRuntimeRow is a resolveSQL row that does not have the expected shape.
var errRuntimeRow = errors.New("unexpected runtime row")

// runtimeFacts is one row of resolveSQL. Nullable columns of the LEFT JOIN
// and the users subquery carry a presence flag instead of a pointer, so a
// row decodes without per-column allocations.
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
	aux                    []byte // jsonb text, valid until the next read on the connection
	hasUser                bool
	userStatus             string
	orgAccess              int32
	hasInstance            bool // i.state is NOT NULL, so it marks the joined row
	iScope                 string
	iOwner, iUser, iConfig [16]byte
	iState                 string
	iGrantVersion          int64
	hasGrant               bool // grant_token_type is NOT NULL exactly when there is a grant
	gAccess, gRefresh      []byte
	gType, gScope          string
	gExpires, gUpdated     *time.Time
}

// decode fills f from the raw binary column values of one row. Byte slices
// are copied except aux, which the caller parses before the next read.
func (f *runtimeFacts) decode(v [][]byte) error {
	if len(v) != len(resolveOIDs) {
		return fmt.Errorf("%w: %d columns", errRuntimeRow, len(v))
	}
	var err error
	need := func(i int) []byte {
		if v[i] == nil && err == nil {
			err = fmt.Errorf("%w: column %d is NULL", errRuntimeRow, i)
		}
		return v[i]
	}
	f.now = decodeTime(need(0), &err)
	f.scope = internText(need(1))
	f.owner = decodeUUID(need(2), &err)
	f.status = internText(need(3))
	f.key = string(need(4))
	f.version = decodeInt8(need(5), &err)
	f.authMode = internText(need(6))
	f.passthrough = decodeBool(need(7), &err)
	f.remoteURL = string(need(8))
	f.staticHeaders = cloneOrNil(v[9])
	f.staticNames = decodeTextArray(need(10), &err)
	f.aux = decodeJSONB(need(11), &err)
	if f.hasUser = v[12] != nil; f.hasUser {
		f.userStatus = internText(v[12])
	}
	f.orgAccess = decodeInt4(need(13), &err)
	if f.hasInstance = v[18] != nil; f.hasInstance {
		f.iScope = internText(need(14))
		f.iOwner = decodeUUID(need(15), &err)
		f.iUser = decodeUUID(need(16), &err)
		f.iConfig = decodeUUID(need(17), &err)
		f.iState = internText(v[18])
		f.iGrantVersion = decodeInt8(need(19), &err)
	}
	if f.hasGrant = v[22] != nil; f.hasGrant {
		f.gAccess = cloneOrNil(v[20])
		f.gRefresh = cloneOrNil(v[21])
		f.gType = internText(v[22])
		if v[23] != nil {
			f.gScope = string(v[23])
		}
		f.gExpires = decodeTimePtr(v[24], &err)
		f.gUpdated = decodeTimePtr(v[25], &err)
	}
	return err
}

// internText returns the shared constant for the enum values the row
// carries (scopes, statuses, auth modes, instance states, token type), so
// they cost no allocation; anything else is copied.
func internText(b []byte) string {
	switch string(b) { // no allocation: the compiler compares in place
	case "user":
		return "user"
	case "org":
		return "org"
	case "enabled":
		return "enabled"
	case "disabled":
		return "disabled"
	case "deleted":
		return "deleted"
	case "active":
		return "active"
	case "blocked":
		return "blocked"
	case "provisional":
		return "provisional"
	case "none":
		return "none"
	case "static_headers":
		return "static_headers"
	case "oauth_dynamic":
		return "oauth_dynamic"
	case "oauth_static":
		return "oauth_static"
	case "needs_reauth":
		return "needs_reauth"
	case "revoked":
		return "revoked"
	case "removed":
		return "removed"
	case "Bearer":
		return "Bearer"
	}
	return string(b)
}

func cloneOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func setErr(err *error, format string, a ...any) {
	if *err == nil {
		*err = fmt.Errorf("%w: "+format, append([]any{errRuntimeRow}, a...)...)
	}
}

func decodeUUID(b []byte, err *error) (u [16]byte) {
	if len(b) != 16 {
		if b != nil {
			setErr(err, "uuid of %d bytes", len(b))
		}
		return u
	}
	return [16]byte(b)
}

func decodeInt8(b []byte, err *error) int64 {
	if len(b) != 8 {
		if b != nil {
			setErr(err, "int8 of %d bytes", len(b))
		}
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func decodeInt4(b []byte, err *error) int32 {
	if len(b) != 4 {
		if b != nil {
			setErr(err, "int4 of %d bytes", len(b))
		}
		return 0
	}
	return int32(binary.BigEndian.Uint32(b))
}

func decodeBool(b []byte, err *error) bool {
	if len(b) != 1 {
		if b != nil {
			setErr(err, "bool of %d bytes", len(b))
		}
		return false
	}
	return b[0] != 0
}

// pgEpochUnix is 2000-01-01 00:00:00 UTC, the zero of Postgres timestamps.
const pgEpochUnix = 946684800

func decodeTime(b []byte, err *error) time.Time {
	if len(b) != 8 {
		if b != nil {
			setErr(err, "timestamptz of %d bytes", len(b))
		}
		return time.Time{}
	}
	us := int64(binary.BigEndian.Uint64(b))
	switch us {
	case 1<<63 - 1, -1 << 63: // 'infinity', '-infinity': no time.Time for them
		setErr(err, "infinite timestamptz")
		return time.Time{}
	}
	// Floor division keeps pre-2000 instants right.
	sec, rem := us/1_000_000, us%1_000_000
	if rem < 0 {
		sec, rem = sec-1, rem+1_000_000
	}
	return time.Unix(pgEpochUnix+sec, rem*1000).UTC()
}

func decodeTimePtr(b []byte, err *error) *time.Time {
	if b == nil {
		return nil
	}
	t := decodeTime(b, err)
	return &t
}

func decodeJSONB(b []byte, err *error) []byte {
	if len(b) == 0 {
		return nil
	}
	if b[0] != 1 {
		setErr(err, "jsonb version %d", b[0])
		return nil
	}
	return b[1:]
}

// decodeTextArray reads a text[] of at most one dimension without NULL
// elements (static_header_names is NOT NULL with non-NULL names).
func decodeTextArray(b []byte, err *error) []string {
	if b == nil {
		return nil
	}
	if len(b) < 12 {
		setErr(err, "text[] header of %d bytes", len(b))
		return nil
	}
	ndim := int32(binary.BigEndian.Uint32(b))
	elem := binary.BigEndian.Uint32(b[8:])
	switch {
	case ndim == 0:
		return nil
	case ndim != 1 || elem != pgtype.TextOID || len(b) < 20:
		setErr(err, "text[] of %d dimensions, element type %d", ndim, elem)
		return nil
	}
	n := int32(binary.BigEndian.Uint32(b[12:]))
	rest := b[20:]
	if n < 0 || int(n) > len(rest)/4 {
		setErr(err, "text[] of %d elements", n)
		return nil
	}
	out := make([]string, 0, n)
	for range n {
		if len(rest) < 4 {
			setErr(err, "truncated text[]")
			return nil
		}
		l := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if l < 0 || int(l) > len(rest) {
			setErr(err, "text[] element of length %d", l)
			return nil
		}
		out = append(out, string(rest[:l]))
		rest = rest[l:]
	}
	if len(rest) != 0 {
		setErr(err, "text[] with %d trailing bytes", len(rest))
		return nil
	}
	return out
}

// auxCache memoizes parsed aux_headers documents by their exact text.
// Configs share few distinct documents and each changes only on a config
// update, so the cache turns a JSON unmarshal per request into a map
// lookup and a clone. Callers always get their own copy. It is bounded:
// once full, further documents are parsed but not stored (a cache, not a
// source of truth; the text it is keyed by was just read from the row).
type auxCache struct {
	mu sync.RWMutex
	m  map[string]map[string]string
}

const auxCacheMax = 1024

func (c *auxCache) parse(b []byte) (map[string]string, error) {
	if len(b) == 0 || string(b) == "{}" {
		return nil, nil
	}
	c.mu.RLock()
	m, ok := c.m[string(b)] // no allocation for the lookup key
	c.mu.RUnlock()
	if ok {
		return maps.Clone(m), nil
	}
	m, err := parseMap(b)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]map[string]string)
	}
	if len(c.m) < auxCacheMax {
		c.m[string(b)] = m
	}
	c.mu.Unlock()
	return maps.Clone(m), nil
}
