package postgres

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"mcpgw/store"
)

// validRow is one well-formed resolveSQL row in the binary format: an org
// oauth config with an instance and a grant.
func validRow(t *testing.T) [][]byte {
	t.Helper()
	i8 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	i4 := func(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	ts := func(tm time.Time) []byte { return i8(tm.Sub(time.Unix(pgEpochUnix, 0)).Microseconds()) }
	id := func(s string) []byte { u := uuid.MustParse(s); return u[:] }
	arr := binary.BigEndian.AppendUint32(nil, 1) // ndim
	arr = binary.BigEndian.AppendUint32(arr, 0)  // no nulls
	arr = binary.BigEndian.AppendUint32(arr, 25) // text
	arr = binary.BigEndian.AppendUint32(arr, 2)  // length
	arr = binary.BigEndian.AppendUint32(arr, 1)  // lower bound
	arr = binary.BigEndian.AppendUint32(arr, 9)  // element 1
	arr = append(arr, "x-api-key"...)            //
	arr = binary.BigEndian.AppendUint32(arr, 3)  // element 2
	arr = append(arr, "x-b"...)                  //
	owner, user, cfg := "0b7f2c9e-0000-4000-8000-000000000001", "0b7f2c9e-0000-4000-8000-000000000002", "0b7f2c9e-0000-4000-8000-000000000003"
	return [][]byte{
		ts(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)),
		[]byte("org"), id(owner), []byte("enabled"), []byte("route-key"), i8(7), []byte("oauth_dynamic"), {1},
		[]byte("https://up.example.com/mcp"), []byte("ciphertext"), arr, append([]byte{1}, `{"x-client": "mcpgw"}`...),
		[]byte("active"), i4(3),
		[]byte("org"), id(owner), id(user), id(cfg), []byte("active"), i8(4),
		[]byte("access"), nil, []byte("Bearer"), nil, ts(time.Date(1999, 12, 31, 23, 59, 59, 500000000, time.UTC)), nil,
	}
}

// TestRuntimeDecode: a well-formed row decodes to the values it carries.
func TestRuntimeDecode(t *testing.T) {
	var f runtimeFacts
	if err := f.decode(validRow(t)); err != nil {
		t.Fatal(err)
	}
	if !f.now.Equal(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)) || f.now.Location() != time.UTC {
		t.Errorf("now = %v", f.now)
	}
	if f.scope != "org" || f.status != "enabled" || f.key != "route-key" || f.version != 7 || !f.passthrough ||
		f.authMode != "oauth_dynamic" || string(f.staticHeaders) != "ciphertext" || len(f.staticNames) != 2 ||
		f.staticNames[0] != "x-api-key" || f.staticNames[1] != "x-b" || string(f.aux) != `{"x-client": "mcpgw"}` {
		t.Errorf("config facts: %+v", f)
	}
	if !f.hasUser || f.userStatus != "active" || f.orgAccess != 3 || !f.hasInstance || f.iGrantVersion != 4 ||
		!f.hasGrant || string(f.gAccess) != "access" || f.gRefresh != nil || f.gType != "Bearer" || f.gScope != "" ||
		f.gUpdated != nil || f.gExpires == nil || !f.gExpires.Equal(time.Date(1999, 12, 31, 23, 59, 59, 500000000, time.UTC)) {
		t.Errorf("user/instance/grant facts: %+v", f)
	}
	if uuid.UUID(f.iUser).String() != "0b7f2c9e-0000-4000-8000-000000000002" || f.iOwner != f.owner {
		t.Errorf("ids: %v %v", uuid.UUID(f.iUser), uuid.UUID(f.iOwner))
	}
}

// TestRuntimeDecodeRejects: every malformed row is an errRuntimeRow error,
// never a silently defaulted fact.
func TestRuntimeDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(v [][]byte) [][]byte
	}{
		{"too few columns", func(v [][]byte) [][]byte { return v[:25] }},
		{"too many columns", func(v [][]byte) [][]byte { return append(v, nil) }},
		{"NULL now", func(v [][]byte) [][]byte { v[0] = nil; return v }},
		{"NULL config status", func(v [][]byte) [][]byte { v[3] = nil; return v }},
		{"NULL route key", func(v [][]byte) [][]byte { v[4] = nil; return v }},
		{"short owner uuid", func(v [][]byte) [][]byte { v[2] = v[2][:15]; return v }},
		{"short version", func(v [][]byte) [][]byte { v[5] = v[5][:4]; return v }},
		{"long bool", func(v [][]byte) [][]byte { v[7] = []byte{1, 0}; return v }},
		{"infinite now", func(v [][]byte) [][]byte { v[0] = binary.BigEndian.AppendUint64(nil, 1<<63-1); return v }},
		{"jsonb version", func(v [][]byte) [][]byte { v[11] = append([]byte{2}, "{}"...); return v }},
		{"two-dimensional array", func(v [][]byte) [][]byte {
			v[10] = binary.BigEndian.AppendUint32(nil, 2)
			v[10] = append(v[10], make([]byte, 16)...)
			return v
		}},
		{"array element NULL", func(v [][]byte) [][]byte { binary.BigEndian.PutUint32(v[10][20:], 0xffffffff); return v }},
		{"array element too long", func(v [][]byte) [][]byte { binary.BigEndian.PutUint32(v[10][20:], 1000); return v }},
		{"array trailing bytes", func(v [][]byte) [][]byte { v[10] = append(v[10], 'x'); return v }},
		{"array truncated", func(v [][]byte) [][]byte { v[10] = v[10][:len(v[10])-1]; return v }},
		{"instance without user", func(v [][]byte) [][]byte { v[16] = nil; return v }},
		{"instance without grant version", func(v [][]byte) [][]byte { v[19] = nil; return v }},
		{"short org access", func(v [][]byte) [][]byte { v[13] = v[13][:2]; return v }},
		{"bad expiry", func(v [][]byte) [][]byte { v[24] = []byte{1}; return v }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f runtimeFacts
			if err := f.decode(tc.edit(validRow(t))); !errors.Is(err, errRuntimeRow) {
				t.Fatalf("err = %v, want errRuntimeRow", err)
			}
		})
	}
}

// TestExecutionContextIs agrees with store.ExecutionContext on the
// canonical form and rejects every other spelling.
func TestExecutionContextIs(t *testing.T) {
	owner := uuid.MustParse("0B7F2C9E-AAAA-4000-8000-00000000000F")
	for _, tc := range []struct {
		ec    string
		scope string
		want  bool
	}{
		{"org:0b7f2c9e-aaaa-4000-8000-00000000000f", "org", true},
		{"org:0B7F2C9E-AAAA-4000-8000-00000000000F", "org", false},
		{"org:0b7f2c9e-aaaa-4000-8000-00000000000e", "org", false},
		{"org:{0b7f2c9e-aaaa-4000-8000-00000000000f}", "org", false},
		{"personal", "org", false},
		{"personal", "user", true},
		{"org:0b7f2c9e-aaaa-4000-8000-00000000000f", "user", false},
		{"", "user", false},
	} {
		if got := executionContextIs(tc.ec, storeScope(tc.scope), owner); got != tc.want {
			t.Errorf("executionContextIs(%q, %s) = %v, want %v", tc.ec, tc.scope, got, tc.want)
		}
	}
}

func storeScope(s string) store.OwnerScope { return store.OwnerScope(s) }
