package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func mustKey(t *testing.T, id string) Key {
	t.Helper()
	k, err := NewKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k1 := mustKey(t, "k1")
	r, err := NewKeyRing(k1)
	if err != nil {
		t.Fatal(err)
	}
	aad := AAD("grants", "access_token", "row-1")
	for _, pt := range [][]byte{nil, {}, []byte("x"), bytes.Repeat([]byte("abc"), 10000)} {
		ct, err := r.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Open(ct, aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("round trip mismatch")
		}
		if id, ok := KeyID(ct); !ok || id != "k1" {
			t.Fatalf("KeyID = %q %v", id, ok)
		}
	}
	a, _ := r.Seal([]byte("same"), aad)
	b, _ := r.Seal([]byte("same"), aad)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are equal: nonce reuse")
	}
}

func TestOpenFailures(t *testing.T) {
	k1, k2 := mustKey(t, "k1"), mustKey(t, "k2")
	r, _ := NewKeyRing(k1)
	other, _ := NewKeyRing(Key{ID: "k1", Bytes: k2.Bytes}) // same id, different bytes
	aad := AAD("configs", "static_headers", "c1")
	ct, err := r.Seal([]byte("secret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { c := bytes.Clone(ct); c[i] ^= 1; return c }
	renamed := bytes.Clone(ct)
	renamed[2] = 'X' // key id byte: "k1" -> "X1"
	var nilRing *KeyRing
	cases := []struct {
		name string
		ring *KeyRing
		ct   []byte
		aad  []byte
	}{
		{"other row", r, ct, AAD("configs", "static_headers", "c2")},
		{"other column", r, ct, AAD("configs", "client_credentials", "c1")},
		{"other table", r, ct, AAD("grants", "static_headers", "c1")},
		{"no aad", r, ct, nil},
		{"wrong key bytes", other, ct, aad},
		{"unknown key id", r, renamed, aad},
		{"tampered version", r, flip(0), aad},
		{"tampered id length", r, flip(1), aad},
		{"tampered nonce", r, flip(5), aad},
		{"tampered body", r, flip(len(ct) - 20), aad},
		{"tampered tag", r, flip(len(ct) - 1), aad},
		{"truncated", r, ct[:len(ct)-1], aad},
		{"header only", r, ct[:4], aad},
		{"empty", r, nil, aad},
		{"nil ring", nilRing, ct, aad},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pt, err := c.ring.Open(c.ct, c.aad)
			if err != ErrDecrypt || pt != nil {
				t.Fatalf("got %q, %v; want ErrDecrypt exactly", pt, err)
			}
		})
	}
}

func TestAADUnambiguous(t *testing.T) {
	if bytes.Equal(AAD("ab", "c", "d"), AAD("a", "bc", "d")) || bytes.Equal(AAD("a", "b", "cd"), AAD("a", "bc", "d")) {
		t.Fatal("AAD is ambiguous")
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := mustKey(t, "k1"), mustKey(t, "k2")
	old, _ := NewKeyRing(k1)
	aad := AAD("t", "c", "r")
	ct1, _ := old.Seal([]byte("v"), aad)

	ring, err := ParseKeyRing(EncodeKey(k2) + ", " + EncodeKey(k1))
	if err != nil {
		t.Fatal(err)
	}
	if ring.PrimaryID() != "k2" || strings.Join(ring.KeyIDs(), ",") != "k2,k1" {
		t.Fatalf("primary %q ids %v", ring.PrimaryID(), ring.KeyIDs())
	}
	if got, err := ring.Open(ct1, aad); err != nil || string(got) != "v" {
		t.Fatalf("old ciphertext: %q %v", got, err)
	}
	if !ring.NeedsReencrypt(ct1) {
		t.Fatal("k1 ciphertext should need re-encryption")
	}
	ct2, err := ring.Reencrypt(ct1, aad)
	if err != nil {
		t.Fatal(err)
	}
	if ring.NeedsReencrypt(ct2) {
		t.Fatal("re-encrypted ciphertext still needs re-encryption")
	}
	if id, _ := KeyID(ct2); id != "k2" {
		t.Fatalf("sealed with %q", id)
	}
	if _, err := old.Open(ct2, aad); err != ErrDecrypt {
		t.Fatal("old ring opened a k2 ciphertext")
	}
	if !ring.NeedsReencrypt([]byte("garbage")) {
		t.Fatal("garbage should need re-encryption")
	}
	if _, err := ring.Reencrypt(ct1, AAD("t", "c", "other")); err != ErrDecrypt {
		t.Fatalf("Reencrypt with wrong aad: %v", err)
	}
}

func TestKeyRingErrors(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	cases := []struct {
		name string
		spec string
		ok   bool
	}{
		{"one key", "k1:" + good, true},
		{"url base64 unpadded", "k1:" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), true},
		{"two keys", "k2:" + good + ",k1:" + good, true},
		{"spaces", " k2 : " + good + " , k1:" + good + " ", true},
		{"empty", "", false},
		{"blank", "  ", false},
		{"no colon", good, false},
		{"empty id", ":" + good, false},
		{"bad id char", "k/1:" + good, false},
		{"long id", strings.Repeat("a", 33) + ":" + good, false},
		{"short key", "k1:" + short, false},
		{"not base64", "k1:!!!!", false},
		{"duplicate id", "k1:" + good + ",k1:" + good, false},
		{"trailing comma", "k1:" + good + ",", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseKeyRing(c.spec)
			if c.ok != (err == nil) {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidKey) || r != nil {
					t.Fatalf("err %v not ErrInvalidKey", err)
				}
				if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), short) {
					t.Fatalf("error leaks key material: %v", err)
				}
			}
		})
	}
	if _, err := NewKeyRing(); !errors.Is(err, ErrInvalidKey) {
		t.Fatal("empty ring accepted")
	}
	var nilRing *KeyRing
	if _, err := nilRing.Seal([]byte("x"), nil); err == nil {
		t.Fatal("nil ring sealed")
	}
}

func TestTokens(t *testing.T) {
	a, b := NewToken("mcpgw_rt_"), NewToken("mcpgw_rt_")
	if a == b || !strings.HasPrefix(a, "mcpgw_rt_") {
		t.Fatalf("tokens %q %q", a, b)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(a, "mcpgw_rt_"))
	if err != nil || len(raw) != 32 {
		t.Fatalf("token body: %d bytes, %v", len(raw), err)
	}
	if h := Hash(a); len(h) != 32 || !Equal(h, Hash(a)) || Equal(h, Hash(b)) {
		t.Fatal("hash/equal")
	}
	if Equal(Hash(a), Hash(a)[:31]) || Equal(nil, Hash(a)) {
		t.Fatal("Equal accepted different lengths")
	}
}

func FuzzOpen(f *testing.F) {
	k := Key{ID: "k1", Bytes: bytes.Repeat([]byte{1}, 32)}
	r, _ := NewKeyRing(k)
	ct, _ := r.Seal([]byte("hello"), []byte("aad"))
	f.Add(ct, []byte("aad"))
	f.Add([]byte{1, 2, 'k', '1'}, []byte{})
	f.Fuzz(func(t *testing.T, c, aad []byte) {
		pt, err := r.Open(c, aad)
		if err != nil && err != ErrDecrypt {
			t.Fatalf("unexpected error %v", err)
		}
		if err == nil && !bytes.Equal(c, ct) {
			// Only the genuine ciphertext may open (GCM forgery is infeasible).
			t.Fatalf("forged ciphertext opened: %q", pt)
		}
	})
}
