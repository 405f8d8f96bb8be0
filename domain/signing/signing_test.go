package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Key generation is slow; share a few keys across tests.
var (
	keysOnce sync.Once
	keys     [3]Key
	keysErr  error
)

func testKeys(t *testing.T) [3]Key {
	t.Helper()
	keysOnce.Do(func() {
		for i := range keys {
			if keys[i], keysErr = Generate(2048); keysErr != nil {
				return
			}
		}
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys
}

func TestGenerate(t *testing.T) {
	for _, bits := range []int{0, 1024, 2047, 16384} {
		if _, err := Generate(bits); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Generate(%d): %v", bits, err)
		}
	}
	k := testKeys(t)[0]
	if len(k.ID) != 43 || k.Private.N.BitLen() != 2048 {
		t.Fatalf("id %q bits %d", k.ID, k.Private.N.BitLen())
	}
	id, _ := KeyID(&k.Private.PublicKey)
	if id != k.ID {
		t.Fatal("ID is not KeyID(public)")
	}
	if strings.Contains(k.String(), k.Private.N.String()[:20]) {
		t.Fatal("String leaks key")
	}
}

func TestPEMRoundTrip(t *testing.T) {
	k := testKeys(t)[0]
	b := EncodePEM(k)
	// Plain PKCS#8: one block, no headers (OpenSSL refuses unknown ones).
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(block.Headers) != 0 || len(rest) != 0 || strings.Contains(string(b), PEMHeaderKeyID) {
		t.Fatalf("PEM:\n%s", b)
	}
	got, err := ParsePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != k.ID || !got.Private.Equal(k.Private) {
		t.Fatal("round trip mismatch")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadFile(p); err != nil || got.ID != k.ID {
		t.Fatalf("LoadFile: %v", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.pem")); err == nil {
		t.Fatal("missing file loaded")
	}

	// A key whose id is not its thumbprint keeps its id through a round
	// trip: EncodePEM falls back to the Key-Id header for it.
	custom := Key{ID: "2026-11.a", Private: k.Private}
	if got, err := ParsePEM(EncodePEM(custom)); err != nil || got.ID != custom.ID {
		t.Fatalf("custom id round trip: %q, %v", got.ID, err)
	}
}

// TestKeyIDRFC7638 checks KeyID against the worked example of RFC 7638
// §3.1 (the RSA key of RFC 7517 Appendix A.1).
func TestKeyIDRFC7638(t *testing.T) {
	const (
		n    = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
		want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	)
	nb, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := KeyID(&rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537})
	if err != nil || got != want {
		t.Fatalf("KeyID = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []*rsa.PublicKey{nil, {}, {N: big.NewInt(0), E: 65537}, {N: big.NewInt(7), E: 0}} {
		if _, err := KeyID(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("KeyID(%v): %v", bad, err)
		}
	}
}

// legacyPEM writes a key file exactly as keygen did before kids became
// RFC 7638 thumbprints: PKCS#8 with a "Key-Id:" header holding the first
// 16 characters of base64url(SHA-256(PKIX DER)).
func legacyPEM(t *testing.T, k Key) ([]byte, string) {
	t.Helper()
	pub, err := x509.MarshalPKIXPublicKey(&k.Private.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pub)
	id := base64.RawURLEncoding.EncodeToString(sum[:])[:16]
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Key-Id": id}, Bytes: der}), id
}

// TestLegacyKeyIDHeader: a file from an earlier keygen loads with the kid
// its header names, so tokens it signed before the upgrade still find
// their key — locally, in the JWKS, and next to a new-format key.
func TestLegacyKeyIDHeader(t *testing.T) {
	ks := testKeys(t)
	old, oldID := legacyPEM(t, ks[1])
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old.pem"), filepath.Join(dir, "new.pem")
	os.WriteFile(oldPath, old, 0o600)
	os.WriteFile(newPath, EncodePEM(ks[0]), 0o600)

	k, err := LoadFile(oldPath)
	if err != nil || k.ID != oldID || k.ID == ks[1].ID || !k.Private.Equal(ks[1].Private) {
		t.Fatalf("legacy file: id %q (want %q), %v", k.ID, oldID, err)
	}
	for _, c := range []struct{ cur, prev, curID, prevID string }{
		{newPath, oldPath, ks[0].ID, oldID}, // rotated to a new-format key
		{oldPath, newPath, oldID, ks[0].ID}, // still signing with the old one
	} {
		s, err := LoadSet(c.cur, c.prev)
		if err != nil || s.Current.ID != c.curID {
			t.Fatalf("LoadSet(%s): %v", c.cur, err)
		}
		jwks, err := ParseJWKS(s.JWKS())
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("issued before the upgrade"))
		sig, _ := rsa.SignPKCS1v15(rand.Reader, ks[1].Private, crypto.SHA256, digest[:])
		pub, ok := s.PublicKey(oldID)
		if !ok || rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil || rsa.VerifyPKCS1v15(jwks[oldID], crypto.SHA256, digest[:], sig) != nil {
			t.Fatalf("signature under the legacy kid %q does not verify (set %v)", oldID, s)
		}
		if _, ok := jwks[c.prevID]; !ok || len(jwks) != 2 {
			t.Fatalf("JWKS kids: %v", jwks)
		}
	}
	// Re-encoding the legacy key keeps its id (EncodePEM writes the header
	// only for such keys).
	if got, err := ParsePEM(EncodePEM(k)); err != nil || got.ID != oldID {
		t.Fatalf("re-encoded legacy key: %q, %v", got.ID, err)
	}
}

// TestJWKSThumbprint: each published kid of a generated key is the RFC 7638
// thumbprint of the very JWK published next to it, so any JOSE library
// recomputes the same id.
func TestJWKSThumbprint(t *testing.T) {
	ks := testKeys(t)
	s, _ := NewSet(ks[0], ks[1])
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range doc.Keys {
		canon, _ := json.Marshal(map[string]string{"e": k["e"], "kty": k["kty"], "n": k["n"]}) // sorted keys, no spaces
		sum := sha256.Sum256(canon)
		if want := base64.RawURLEncoding.EncodeToString(sum[:]); k["kid"] != want {
			t.Fatalf("kid %q, thumbprint of published JWK %q", k["kid"], want)
		}
	}
}

func TestParsePEMErrors(t *testing.T) {
	k := testKeys(t)[0]
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.Private)})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKCS8PrivateKey(small)
	good, _ := x509.MarshalPKCS8PrivateKey(k.Private)
	cases := []struct {
		name   string
		in     []byte
		wantID string
	}{
		{"pkcs1 without Key-Id derives id", pkcs1, k.ID},
		{"custom Key-Id kept", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Key-Id": "2026-11.a"}, Bytes: good}), "2026-11.a"},
		{"not PEM", []byte("hello"), ""},
		{"public key block", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: good}), ""},
		{"EC key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), ""},
		{"1024-bit key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: smallDER}), ""},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), ""},
		{"garbage PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2, 3}}), ""},
		{"bad Key-Id", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Key-Id": "a b"}, Bytes: good}), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePEM(c.in)
			if c.wantID == "" {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || got.ID != c.wantID {
				t.Fatalf("got %q, %v", got.ID, err)
			}
		})
	}
}

func TestSetAndJWKS(t *testing.T) {
	ks := testKeys(t)
	s, err := NewSet(ks[0], ks[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSet(ks[0], ks[0]); !errors.Is(err, ErrInvalidKey) {
		t.Fatal("duplicate kid accepted")
	}
	if _, err := NewSet(Key{}); !errors.Is(err, ErrInvalidKey) {
		t.Fatal("empty current accepted")
	}
	for _, k := range ks[:2] {
		if pub, ok := s.PublicKey(k.ID); !ok || !pub.Equal(&k.Private.PublicKey) {
			t.Fatalf("PublicKey(%s)", k.ID)
		}
	}
	if _, ok := s.PublicKey(ks[2].ID); ok {
		t.Fatal("unknown kid found")
	}
	var zero Set
	if _, ok := zero.PublicKey(""); ok || string(zero.JWKS()) != `{"keys":[]}` {
		t.Fatalf("zero set: %s", zero.JWKS())
	}

	raw := s.JWKS()
	var doc struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Keys) != 2 {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	for i, k := range doc.Keys {
		if k["kty"] != "RSA" || k["use"] != "sig" || k["alg"] != "RS256" || k["kid"] != ks[i].ID || k["e"] != "AQAB" {
			t.Fatalf("key %d: %v", i, k)
		}
		if _, hasD := k["d"]; hasD {
			t.Fatal("private exponent published")
		}
	}
	parsed, err := ParseJWKS(raw)
	if err != nil || len(parsed) != 2 {
		t.Fatalf("ParseJWKS: %v", err)
	}
	// A signature by the current key verifies with the parsed JWKS key.
	digest := sha256.Sum256([]byte("payload"))
	sig, _ := rsa.SignPKCS1v15(rand.Reader, ks[0].Private, crypto.SHA256, digest[:])
	if err := rsa.VerifyPKCS1v15(parsed[ks[0].ID], crypto.SHA256, digest[:], sig); err != nil {
		t.Fatal(err)
	}
}

func TestParseJWKSErrors(t *testing.T) {
	ks := testKeys(t)
	s, _ := NewSet(ks[0])
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	json.Unmarshal(s.JWKS(), &doc)
	base := doc.Keys[0]
	with := func(k, v string) []byte {
		m := map[string]any{}
		for a, b := range base {
			m[a] = b
		}
		if v == "<delete>" {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(map[string]any{"keys": []any{m}})
		return b
	}
	dup, _ := json.Marshal(map[string]any{"keys": []any{base, base}})
	ecOnly := []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"e"}]}`)
	cases := []struct {
		name string
		in   []byte
		n    int // keys expected; -1 = error
	}{
		{"valid", s.JWKS(), 1},
		{"unknown kty ignored", ecOnly, 0},
		{"no alg or use is fine", with("alg", "<delete>"), 1},
		{"not json", []byte("{"), -1},
		{"no kid", with("kid", "<delete>"), -1},
		{"use enc", with("use", "enc"), -1},
		{"alg none", with("alg", "none"), -1},
		{"alg HS256", with("alg", "HS256"), -1},
		{"bad n", with("n", "!!"), -1},
		{"short n", with("n", "AQAB"), -1},
		{"even e", with("e", "Ag"), -1},
		{"e leading zero", with("e", "AAEAAQ"), -1},
		{"duplicate kid", dup, -1},
		{"too large", append([]byte(`{"keys":[],"x":"`), append(make([]byte, 1<<20), '"', '}')...), -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseJWKS(c.in)
			if c.n < 0 {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || len(got) != c.n {
				t.Fatalf("got %d keys, %v", len(got), err)
			}
		})
	}
}

func TestLoadSet(t *testing.T) {
	ks := testKeys(t)
	dir := t.TempDir()
	var paths []string
	for i, k := range ks {
		p := filepath.Join(dir, "k"+string(rune('0'+i))+".pem")
		os.WriteFile(p, EncodePEM(k), 0o600)
		paths = append(paths, p)
	}
	s, err := LoadSet(paths[0], paths[1:]...)
	if err != nil || s.Current.ID != ks[0].ID || len(s.Previous) != 2 {
		t.Fatalf("LoadSet: %v", err)
	}
	if _, err := LoadSet(paths[0], paths[0]); err == nil {
		t.Fatal("duplicate key accepted")
	}
}

// signJWT signs a minimal RS256 token with key under kid, as a replica
// before the kid change did for a headerless key file.
func signJWT(t *testing.T, key *rsa.PrivateKey, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "u1"})
	tok.Header["kid"] = kid
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// verifyJWT verifies raw with the key lookup, as oauthserver and extauthz
// do: RS256 only, the key named by kid.
func verifyJWT(raw string, lookup func(kid string) (*rsa.PublicKey, bool)) error {
	_, err := jwt.Parse(raw, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		if pub, ok := lookup(kid); ok {
			return pub, nil
		}
		return nil, errors.New("unknown kid")
	}, jwt.WithValidMethods([]string{"RS256"}))
	return err
}

// TestLegacyKeyIDAlias: a headerless key file used to get a 16-character
// kid; it now gets its thumbprint, but a token signed under the old kid
// (before the upgrade, or by a replica not yet upgraded) still verifies
// through the key set, as current or previous key, and through a parsed
// JWKS given WithLegacyKeyIDs. New tokens and the JWKS keep the
// thumbprint. Unknown kids, including the legacy kid of a key not in the
// set, still fail.
func TestLegacyKeyIDAlias(t *testing.T) {
	ks := testKeys(t)
	_, want := legacyPEM(t, ks[1]) // the old derivation, by hand
	legacy, err := LegacyKeyID(&ks[1].Private.PublicKey)
	if err != nil || legacy != want {
		t.Fatalf("LegacyKeyID = %q, %v; want %q", legacy, err, want)
	}
	if _, err := LegacyKeyID(nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("LegacyKeyID(nil): %v", err)
	}
	outsider, _ := LegacyKeyID(&ks[2].Private.PublicKey)
	old := signJWT(t, ks[1].Private, legacy)

	for name, s := range map[string]*Set{
		"current":  {Current: ks[1], Previous: []Key{ks[0]}},
		"previous": {Current: ks[0], Previous: []Key{ks[1]}},
	} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := verifyJWT(old, s.PublicKey); err != nil {
			t.Errorf("%s: token under the legacy kid via Set.PublicKey: %v", name, err)
		}
		vk := s.VerificationKeys()
		if err := verifyJWT(old, func(kid string) (*rsa.PublicKey, bool) { k, ok := vk[kid]; return k, ok }); err != nil {
			t.Errorf("%s: token under the legacy kid via VerificationKeys: %v", name, err)
		}
		published, err := ParseJWKS(s.JWKS())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := published[legacy]; ok || len(published) != 2 {
			t.Errorf("%s: JWKS publishes %d keys, legacy kid among them: %v; want only the thumbprints", name, len(published), ok)
		}
		fromJWKS := WithLegacyKeyIDs(published)
		if err := verifyJWT(old, func(kid string) (*rsa.PublicKey, bool) { k, ok := fromJWKS[kid]; return k, ok }); err != nil {
			t.Errorf("%s: token under the legacy kid via WithLegacyKeyIDs(ParseJWKS): %v", name, err)
		}
		if len(published) != 2 || len(fromJWKS) != 4 || len(vk) != 4 {
			t.Errorf("%s: %d published, %d with aliases from JWKS, %d from the set; want 2, 4, 4", name, len(published), len(fromJWKS), len(vk))
		}
		// New tokens use the thumbprint, which verifies too.
		if err := verifyJWT(signJWT(t, s.Current.Private, s.Current.ID), s.PublicKey); err != nil || len(s.Current.ID) != 43 {
			t.Errorf("%s: current kid %q: %v", name, s.Current.ID, err)
		}
		for _, kid := range []string{outsider, ks[2].ID, "AAAAAAAAAAAAAAAA", legacy[:15], legacy + "x", ""} {
			if _, ok := s.PublicKey(kid); ok {
				t.Errorf("%s: PublicKey(%q) found a key for an unknown kid", name, kid)
			}
			if _, ok := vk[kid]; ok {
				t.Errorf("%s: VerificationKeys has unknown kid %q", name, kid)
			}
		}
		// The legacy kid names ks[1] only: a token ks[2] signed under
		// ks[1]'s legacy kid fails.
		if err := verifyJWT(signJWT(t, ks[2].Private, legacy), s.PublicKey); err == nil {
			t.Errorf("%s: token of a key outside the set verified under a member's legacy kid", name)
		}
	}
	// The input map of WithLegacyKeyIDs is left alone.
	in := map[string]*rsa.PublicKey{ks[1].ID: &ks[1].Private.PublicKey}
	if out := WithLegacyKeyIDs(in); len(in) != 1 || len(out) != 2 || out[legacy] != in[ks[1].ID] {
		t.Errorf("WithLegacyKeyIDs: in %d entries, out %d", len(in), len(out))
	}
}

// TestLegacyKeyIDAliasOnlyForThumbprintKids: a key whose kid is not its
// thumbprint (a file with a Key-Id header, or a custom id) kept its kid
// across the upgrade, so it gets no alias.
func TestLegacyKeyIDAliasOnlyForThumbprintKids(t *testing.T) {
	ks := testKeys(t)
	file, headerID := legacyPEM(t, ks[0])
	fromFile, err := ParsePEM(file)
	if err != nil {
		t.Fatal(err)
	}
	s := &Set{Current: fromFile, Previous: []Key{{ID: "2026-11.a", Private: ks[1].Private}}}
	vk := s.VerificationKeys()
	if len(vk) != 2 || vk[headerID] == nil || vk["2026-11.a"] == nil {
		t.Fatalf("VerificationKeys of header/custom kids: %v", vk)
	}
	if legacy1, _ := LegacyKeyID(&ks[1].Private.PublicKey); vk[legacy1] != nil {
		t.Fatal("a key with a custom kid got a legacy alias")
	}
}

// TestLegacyKeyIDAliasNeverCollides: the alias never takes a kid another
// key is known by, and an alias two keys would share is given to neither
// (fail closed): a token signed under it must not verify with either.
func TestLegacyKeyIDAliasNeverCollides(t *testing.T) {
	ks := testKeys(t)
	a, b := ks[0], ks[1]
	aLegacy, _ := LegacyKeyID(&a.Private.PublicKey)

	// b is loaded from a file whose Key-Id header happens to be a's legacy
	// id: that kid is b's, never an alias of a.
	s := &Set{Current: a, Previous: []Key{{ID: aLegacy, Private: b.Private}}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if pub, ok := s.PublicKey(aLegacy); !ok || !pub.Equal(&b.Private.PublicKey) {
		t.Fatalf("PublicKey(%q) is not the key known by that kid", aLegacy)
	}
	if vk := s.VerificationKeys(); len(vk) != 2 || !vk[aLegacy].Equal(&b.Private.PublicKey) {
		t.Fatalf("VerificationKeys: %d entries, %q -> b: %v", len(vk), aLegacy, vk[aLegacy].Equal(&b.Private.PublicKey))
	}
	if err := verifyJWT(signJWT(t, a.Private, aLegacy), s.PublicKey); err == nil {
		t.Fatal("a token of a under its legacy kid verified although that kid is b's")
	}

	// Two keys mapping to one legacy id (a 96-bit prefix collision, forced
	// here through the derivation): neither gets it.
	shared := func(*rsa.PublicKey) (string, error) { return "sharedlegacykid0", nil }
	both := map[string]*rsa.PublicKey{a.ID: &a.Private.PublicKey, b.ID: &b.Private.PublicKey}
	if out := withAliases(both, shared); len(out) != 2 || out["sharedlegacykid0"] != nil {
		t.Fatalf("shared alias given to a key: %d entries", len(out))
	}
	// The same alias when only one key has it is kept (the derivation
	// above is what is being refused, not the id).
	one := map[string]*rsa.PublicKey{a.ID: &a.Private.PublicKey}
	if out := withAliases(one, shared); len(out) != 2 || out["sharedlegacykid0"] != one[a.ID] {
		t.Fatalf("single alias: %d entries", len(out))
	}
	// Three keys, two of them sharing: the shared alias stays refused no
	// matter in which order the keys are seen.
	c := ks[2]
	three := map[string]*rsa.PublicKey{a.ID: &a.Private.PublicKey, b.ID: &b.Private.PublicKey, c.ID: &c.Private.PublicKey}
	byKey := func(pub *rsa.PublicKey) (string, error) {
		if pub.Equal(&c.Private.PublicKey) {
			return "uniquelegacykid0", nil
		}
		return "sharedlegacykid0", nil
	}
	for range 20 { // map order varies between runs of the loop
		out := withAliases(three, byKey)
		if len(out) != 4 || out["sharedlegacykid0"] != nil || out["uniquelegacykid0"] != three[c.ID] {
			t.Fatalf("three keys: %d entries, shared present %v", len(out), out["sharedlegacykid0"] != nil)
		}
	}
}
