// Package secrets holds the at-rest encryption key ring and the helpers for
// one-time tokens (DESIGN §9).
//
// Encryption: AES-256-GCM with a key ring. Every ciphertext carries the id
// of the key that sealed it, so old keys keep decrypting after a rotation
// while the newest (primary) key encrypts; NeedsReencrypt tells a
// re-encryption job which rows to rewrite. Associated data (AAD) binds a
// ciphertext to its table, column and row, so a ciphertext copied into
// another row or column fails to open.
//
// One-time tokens (authorization codes, refresh tokens, client secrets,
// registration tokens, API tokens, session ids) are ≥256-bit random values
// stored only as their SHA-256 hash (Hash) and compared in constant time
// (Equal).
//
// Nothing in this package logs, and no error message contains key bytes,
// plaintext or ciphertext.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the AES-256 key size in bytes.
const KeySize = 32

// maxKeyIDLen bounds key ids: they are stored in every ciphertext.
const maxKeyIDLen = 32

// formatV1 is the first byte of every ciphertext this package produces:
//
//	0x01 | len(keyID) (1 byte) | keyID | nonce (12 bytes) | GCM ciphertext+tag
//
// The header (version, key id) is authenticated too: it is prepended to the
// caller's AAD, so a ciphertext whose key id was edited fails to open.
const formatV1 byte = 0x01

// ErrDecrypt is returned by Open for every failure (unknown key, wrong AAD,
// tampering, truncation). It deliberately carries no detail: a decryption
// oracle must not learn which check failed.
var ErrDecrypt = errors.New("secrets: cannot decrypt")

// ErrInvalidKey reports an unusable key ring input (wrong size, bad id,
// duplicate id, malformed spec). Messages name the key id or position,
// never the key bytes.
var ErrInvalidKey = errors.New("secrets: invalid key")

// Key is one AES-256 key with a stable id (DESIGN §9: the key id is stored
// with each ciphertext). Bytes must be exactly 32 bytes.
type Key struct {
	ID    string
	Bytes []byte
}

// String never prints key bytes, so a Key accidentally passed to a logger or
// fmt verb leaks only its id.
func (k Key) String() string { return "secrets.Key{ID:" + k.ID + "}" }

// GoString mirrors String for %#v.
func (k Key) GoString() string { return k.String() }

// NewKey returns a fresh random 32-byte key with the given id.
func NewKey(id string) (Key, error) {
	if err := validKeyID(id); err != nil {
		return Key{}, err
	}
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return Key{}, fmt.Errorf("secrets: random: %w", err)
	}
	return Key{ID: id, Bytes: b}, nil
}

// EncodeKey renders k in the key ring spec format "id:base64(bytes)".
func EncodeKey(k Key) string {
	return k.ID + ":" + base64.StdEncoding.EncodeToString(k.Bytes)
}

type ringKey struct {
	id   string
	aead cipher.AEAD
}

// KeyRing seals with its primary (first, newest) key and opens with any of
// its keys. It is safe for concurrent use. A nil or zero KeyRing seals and
// opens nothing (every call fails), which keeps misconfiguration closed.
type KeyRing struct {
	keys []ringKey // keys[0] is the primary
	byID map[string]cipher.AEAD
}

// NewKeyRing builds a ring. The first key is the primary: it seals; every
// key opens. Errors (matching ErrInvalidKey) on no keys, a key that is not
// 32 bytes, an invalid id (1–32 characters of [A-Za-z0-9_.-]) or a
// duplicate id.
func NewKeyRing(keys ...Key) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: key ring is empty", ErrInvalidKey)
	}
	r := &KeyRing{byID: make(map[string]cipher.AEAD, len(keys))}
	for i, k := range keys {
		if err := validKeyID(k.ID); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if len(k.Bytes) != KeySize {
			return nil, fmt.Errorf("%w: key %q must be %d bytes, got %d", ErrInvalidKey, k.ID, KeySize, len(k.Bytes))
		}
		if _, dup := r.byID[k.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate key id %q", ErrInvalidKey, k.ID)
		}
		block, err := aes.NewCipher(k.Bytes)
		if err != nil { // unreachable for 32-byte keys; never echo the key
			return nil, fmt.Errorf("%w: key %q unusable", ErrInvalidKey, k.ID)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q unusable", ErrInvalidKey, k.ID)
		}
		r.keys = append(r.keys, ringKey{id: k.ID, aead: aead})
		r.byID[k.ID] = aead
	}
	return r, nil
}

// ParseKeyRing parses the environment/config form of a ring:
// comma-separated "id:base64key" entries, newest first, e.g.
// "k2:<base64>,k1:<base64>". The key may be standard or URL-safe base64,
// padded or not. Whitespace around entries is ignored.
func ParseKeyRing(spec string) (*KeyRing, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("%w: key ring is empty", ErrInvalidKey)
	}
	var keys []Key
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		id, b64, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d is not id:base64key", ErrInvalidKey, i+1)
		}
		id = strings.TrimSpace(id)
		if err := validKeyID(id); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		b, err := decodeBase64(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("%w: key %q is not valid base64", ErrInvalidKey, id)
		}
		keys = append(keys, Key{ID: id, Bytes: b})
	}
	return NewKeyRing(keys...)
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("bad base64")
}

func validKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLen {
		return fmt.Errorf("%w: key id must be 1-%d characters", ErrInvalidKey, maxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: key id may contain only letters, digits, '-', '_' and '.'", ErrInvalidKey)
		}
	}
	return nil
}

// String lists key ids only, so a ring passed to a logger leaks nothing.
func (r *KeyRing) String() string {
	return "secrets.KeyRing{" + strings.Join(r.KeyIDs(), ",") + "}"
}

// GoString mirrors String for %#v.
func (r *KeyRing) GoString() string { return r.String() }

// PrimaryID is the id of the key that seals ("" for a nil ring).
func (r *KeyRing) PrimaryID() string {
	if r == nil || len(r.keys) == 0 {
		return ""
	}
	return r.keys[0].id
}

// KeyIDs lists the ring's key ids, primary first.
func (r *KeyRing) KeyIDs() []string {
	if r == nil {
		return nil
	}
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return ids
}

// Seal encrypts plaintext with the primary key and a fresh random 96-bit
// nonce. aad binds the result to its place (use AAD); the same aad must be
// given to Open. The output embeds the key id.
func (r *KeyRing) Seal(plaintext, aad []byte) ([]byte, error) {
	if r == nil || len(r.keys) == 0 {
		return nil, fmt.Errorf("%w: no primary key", ErrInvalidKey)
	}
	k := r.keys[0]
	hdr := header(k.id)
	ns := k.aead.NonceSize()
	out := make([]byte, len(hdr)+ns, len(hdr)+ns+len(plaintext)+k.aead.Overhead())
	copy(out, hdr)
	if _, err := rand.Read(out[len(hdr):]); err != nil {
		return nil, fmt.Errorf("secrets: random: %w", err)
	}
	nonce := out[len(hdr):]
	return k.aead.Seal(out, nonce, plaintext, fullAAD(hdr, aad)), nil
}

// Open decrypts a Seal output with the key it names. Every failure returns
// ErrDecrypt and nothing else.
func (r *KeyRing) Open(ciphertext, aad []byte) ([]byte, error) {
	if r == nil {
		return nil, ErrDecrypt
	}
	id, rest, ok := splitHeader(ciphertext)
	if !ok {
		return nil, ErrDecrypt
	}
	aead, ok := r.byID[id]
	if !ok {
		return nil, ErrDecrypt
	}
	ns := aead.NonceSize()
	if len(rest) < ns+aead.Overhead() {
		return nil, ErrDecrypt
	}
	hdr := ciphertext[:len(ciphertext)-len(rest)]
	pt, err := aead.Open(nil, rest[:ns], rest[ns:], fullAAD(hdr, aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// NeedsReencrypt reports whether ciphertext was not sealed by the primary
// key (including unparsable input), i.e. a re-encryption job should open it
// and seal it again.
func (r *KeyRing) NeedsReencrypt(ciphertext []byte) bool {
	id, _, ok := splitHeader(ciphertext)
	return !ok || id != r.PrimaryID()
}

// Reencrypt opens ciphertext with whichever key sealed it and seals it again
// with the primary key, under the same aad.
func (r *KeyRing) Reencrypt(ciphertext, aad []byte) ([]byte, error) {
	pt, err := r.Open(ciphertext, aad)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return r.Seal(pt, aad)
}

// KeyID returns the id of the key that sealed ciphertext, if it parses.
func KeyID(ciphertext []byte) (string, bool) {
	id, _, ok := splitHeader(ciphertext)
	return id, ok
}

func header(id string) []byte {
	h := make([]byte, 2+len(id))
	h[0] = formatV1
	h[1] = byte(len(id))
	copy(h[2:], id)
	return h
}

func splitHeader(c []byte) (id string, rest []byte, ok bool) {
	if len(c) < 2 || c[0] != formatV1 {
		return "", nil, false
	}
	n := int(c[1])
	if n == 0 || n > maxKeyIDLen || len(c) < 2+n {
		return "", nil, false
	}
	return string(c[2 : 2+n]), c[2+n:], true
}

func fullAAD(hdr, aad []byte) []byte {
	out := make([]byte, 0, len(hdr)+len(aad))
	return append(append(out, hdr...), aad...)
}

// AAD returns associated data binding a ciphertext to one column of one row
// (DESIGN §9). Each part is length-prefixed, so ("ab","c") and ("a","bc")
// never collide.
func AAD(table, column, rowID string) []byte {
	const label = "mcpgw/secrets/v1"
	b := make([]byte, 0, len(label)+12+len(table)+len(column)+len(rowID))
	b = append(b, label...)
	for _, p := range []string{table, column, rowID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// TokenBytes is the randomness in a NewToken value: 256 bits (DESIGN §9
// asks for at least 128).
const TokenBytes = 32

// NewToken returns prefix followed by base64url (no padding) of 32 random
// bytes. The prefix (e.g. "mcpgw_at_") only helps humans and secret
// scanners recognise the token; it adds no security.
func NewToken(prefix string) string {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on supported platforms; failing loudly
		// beats issuing a guessable token.
		panic("secrets: crypto/rand failed: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Hash returns SHA-256(token): what the store keeps instead of a one-time
// token. A plain hash suffices (no salt, no KDF) because the input has at
// least 128 bits of entropy (DESIGN §9), so precomputation is useless.
func Hash(token string) []byte {
	s := sha256.Sum256([]byte(token))
	return s[:]
}

// Equal compares two byte strings (e.g. hashes) in constant time for equal
// lengths, so comparison timing reveals nothing about a stored value.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
