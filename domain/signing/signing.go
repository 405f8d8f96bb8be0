// Package signing holds the RS256 keys that sign gateway JWTs (DESIGN §4):
// oauthserver signs with Set.Current, extauthz verifies with any key of the
// set, and /oauth/jwks.json publishes the set (RFC 7517) so a rotation
// never invalidates tokens signed by the previous key before they expire.
package signing

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
)

// MinBits is the smallest RSA modulus accepted anywhere (generated, parsed
// or published): RFC 7518 §3.3 requires at least 2048 bits for RS256.
const MinBits = 2048

// maxBits bounds parsed keys so a hostile JWKS cannot make us do huge
// modular exponentiations.
const maxBits = 8192

// PEMHeaderKeyID is the PEM header that carried the key id in key files
// written before keygen switched to plain PKCS#8 (OpenSSL refuses PEM
// headers). Such files still load with the header's id, so tokens signed
// under it keep verifying; nothing writes the header any more.
const PEMHeaderKeyID = "Key-Id"

// ErrInvalidKey reports an unusable key or key file. Messages never contain
// key material.
var ErrInvalidKey = errors.New("signing: invalid key")

// Key is an RS256 signing key and its JWT "kid".
type Key struct {
	ID      string
	Private *rsa.PrivateKey
}

// String prints only the key id, so a Key passed to a logger leaks nothing.
func (k Key) String() string { return "signing.Key{ID:" + k.ID + "}" }

// GoString mirrors String for %#v.
func (k Key) GoString() string { return k.String() }

// Generate creates a new RSA key of bits (≥ 2048) with ID = KeyID of its
// public key.
func Generate(bits int) (Key, error) {
	if bits < MinBits || bits > maxBits {
		return Key{}, fmt.Errorf("%w: RSA size must be %d-%d bits, got %d", ErrInvalidKey, MinBits, maxBits, bits)
	}
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return Key{}, fmt.Errorf("signing: generate: %w", err)
	}
	id, err := KeyID(&priv.PublicKey)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, Private: priv}, nil
}

// KeyID derives the key id from a public key: its RFC 7638 JWK
// thumbprint, base64url(SHA-256) of the JWK's required members in
// lexicographic order without whitespace, {"e":..,"kty":"RSA","n":..}
// (§3.2, §3.3) — 43 characters, the same on every replica without
// coordination and recomputable by any JOSE library from the JWKS entry.
func KeyID(pub *rsa.PublicKey) (string, error) {
	if pub == nil || pub.N == nil || pub.N.Sign() <= 0 || pub.E <= 0 {
		return "", fmt.Errorf("%w: no public key", ErrInvalidKey)
	}
	n, e := jwkNE(pub)
	// n and e are base64url, which needs no JSON escaping.
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// jwkNE encodes n and e as RFC 7518 §6.3.1 wants them: unpadded base64url
// of the minimal big-endian bytes.
func jwkNE(pub *rsa.PublicKey) (n, e string) {
	return base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// EncodePEM renders k as a plain PKCS#8 "PRIVATE KEY" PEM block (RFC 7468
// §10), which OpenSSL and every other tool read; ParsePEM derives the id
// back with KeyID. Only a key whose ID is not KeyID of its public key (one
// loaded from an older file with a Key-Id header) is written with that
// header, because the id could not be recovered otherwise. It panics only
// if k has no private key.
func EncodePEM(k Key) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		panic("signing: EncodePEM: " + err.Error())
	}
	block := &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	if id, err := KeyID(&k.Private.PublicKey); err != nil || id != k.ID {
		block.Headers = map[string]string{PEMHeaderKeyID: k.ID}
	}
	return pem.EncodeToMemory(block)
}

// ParsePEM reads the first PEM block of b: PKCS#8 "PRIVATE KEY" (what
// EncodePEM and openssl genpkey write) or PKCS#1 "RSA PRIVATE KEY". The key
// must be RSA with 2048-8192 bits. The id is KeyID of the public key,
// except in an older file with a Key-Id header, whose id stays the
// header's (it must be a valid kid) so tokens it already signed verify.
func ParsePEM(b []byte) (Key, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return Key{}, fmt.Errorf("%w: no PEM block", ErrInvalidKey)
	}
	var priv *rsa.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, fmt.Errorf("%w: malformed PKCS#8 key", ErrInvalidKey)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return Key{}, fmt.Errorf("%w: not an RSA key (RS256 needs RSA)", ErrInvalidKey)
		}
		priv = rk
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, fmt.Errorf("%w: malformed PKCS#1 key", ErrInvalidKey)
		}
		priv = k
	default:
		return Key{}, fmt.Errorf("%w: PEM block type %q is not a private key", ErrInvalidKey, block.Type)
	}
	if n := priv.N.BitLen(); n < MinBits || n > maxBits {
		return Key{}, fmt.Errorf("%w: RSA size must be %d-%d bits, got %d", ErrInvalidKey, MinBits, maxBits, n)
	}
	if err := priv.Validate(); err != nil {
		return Key{}, fmt.Errorf("%w: RSA key fails validation", ErrInvalidKey)
	}
	id := block.Headers[PEMHeaderKeyID]
	if id == "" {
		var err error
		if id, err = KeyID(&priv.PublicKey); err != nil {
			return Key{}, err
		}
	} else if !validKID(id) {
		return Key{}, fmt.Errorf("%w: Key-Id header must be 1-64 characters of [A-Za-z0-9_.-]", ErrInvalidKey)
	}
	return Key{ID: id, Private: priv}, nil
}

// LoadFile reads and parses a PEM key file. Errors name the path, never
// the content.
func LoadFile(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("signing: read key file: %w", err)
	}
	k, err := ParsePEM(b)
	if err != nil {
		return Key{}, fmt.Errorf("signing key file %s: %w", path, err)
	}
	return k, nil
}

func validKID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Set is the signing key set: Current signs; Current and Previous verify
// and are published in the JWKS, so tokens signed before a rotation stay
// valid until they expire (DESIGN §4). The zero Set has no keys: it
// verifies nothing.
type Set struct {
	Current  Key
	Previous []Key
}

// NewSet builds a set and checks it: a current key, no duplicate kids, every
// key RSA ≥ 2048 bits.
func NewSet(current Key, previous ...Key) (*Set, error) {
	s := &Set{Current: current, Previous: previous}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadSet loads the current key file and any previous key files.
func LoadSet(currentPath string, previousPaths ...string) (*Set, error) {
	cur, err := LoadFile(currentPath)
	if err != nil {
		return nil, err
	}
	var prev []Key
	for _, p := range previousPaths {
		k, err := LoadFile(p)
		if err != nil {
			return nil, err
		}
		prev = append(prev, k)
	}
	return NewSet(cur, prev...)
}

// Validate checks the set's invariants.
func (s *Set) Validate() error {
	if s == nil || s.Current.Private == nil {
		return fmt.Errorf("%w: no current signing key", ErrInvalidKey)
	}
	seen := map[string]bool{}
	for _, k := range s.keys() {
		if k.Private == nil || !validKID(k.ID) {
			return fmt.Errorf("%w: key %q has no private key or a bad id", ErrInvalidKey, k.ID)
		}
		if n := k.Private.N.BitLen(); n < MinBits || n > maxBits {
			return fmt.Errorf("%w: key %q has %d bits", ErrInvalidKey, k.ID, n)
		}
		if seen[k.ID] {
			return fmt.Errorf("%w: duplicate key id %q", ErrInvalidKey, k.ID)
		}
		seen[k.ID] = true
	}
	return nil
}

func (s *Set) keys() []Key {
	if s == nil {
		return nil
	}
	var out []Key
	if s.Current.Private != nil {
		out = append(out, s.Current)
	}
	for _, k := range s.Previous {
		if k.Private != nil {
			out = append(out, k)
		}
	}
	return out
}

// PublicKey returns the verification key for kid (current or previous),
// also accepting a key's legacy kid (see WithLegacyKeyIDs), so tokens
// signed before the kid became the thumbprint keep verifying.
func (s *Set) PublicKey(kid string) (*rsa.PublicKey, bool) {
	for _, k := range s.keys() {
		if k.ID == kid {
			return &k.Private.PublicKey, true
		}
	}
	if len(kid) != legacyKeyIDLen {
		return nil, false
	}
	pub, ok := s.VerificationKeys()[kid]
	return pub, ok
}

// VerificationKeys maps every kid a token signed by the set may carry to
// its verification key: each key's ID, and the legacy kid of each key
// whose ID is its thumbprint (WithLegacyKeyIDs). New tokens and the JWKS
// use only the IDs. A nil or zero set yields an empty map.
func (s *Set) VerificationKeys() map[string]*rsa.PublicKey {
	byKID := map[string]*rsa.PublicKey{}
	for _, k := range s.keys() {
		if _, dup := byKID[k.ID]; !dup { // first wins, as in PublicKey
			byKID[k.ID] = &k.Private.PublicKey
		}
	}
	return WithLegacyKeyIDs(byKID)
}

// legacyKeyIDLen is the length of every LegacyKeyID.
const legacyKeyIDLen = 16

// LegacyKeyID is the kid earlier versions derived for a key file without
// a Key-Id header: the first 16 characters of base64url(SHA-256(PKIX DER
// of the public key)). Since kids became RFC 7638 thumbprints (KeyID),
// such a key signs under its thumbprint, but tokens it signed before the
// upgrade, or that a not yet upgraded replica still signs, carry this id.
// It is for verification only: nothing signs or publishes under it.
func LegacyKeyID(pub *rsa.PublicKey) (string, error) {
	if pub == nil || pub.N == nil || pub.N.Sign() <= 0 || pub.E <= 0 {
		return "", fmt.Errorf("%w: no public key", ErrInvalidKey)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: cannot encode public key", ErrInvalidKey)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:legacyKeyIDLen], nil
}

// WithLegacyKeyIDs returns a new map holding byKID (verification keys by
// the kid they are published under, as from ParseJWKS) plus, for each key
// whose kid is its thumbprint (KeyID), its LegacyKeyID as a second kid for
// the same key, so a verifier accepts tokens signed under the id the key
// had before the upgrade. Only keys whose kid is the thumbprint get an
// alias: a key from a file with a Key-Id header kept that id, so nothing
// changed for it. Fail closed: an alias that equals a kid in byKID, or
// that two keys would share, is given to no key. byKID is not modified.
func WithLegacyKeyIDs(byKID map[string]*rsa.PublicKey) map[string]*rsa.PublicKey {
	return withAliases(byKID, LegacyKeyID)
}

// withAliases is WithLegacyKeyIDs with the alias derivation as a
// parameter, so tests can force the collisions a real 96-bit id makes
// practically impossible.
func withAliases(byKID map[string]*rsa.PublicKey, alias func(*rsa.PublicKey) (string, error)) map[string]*rsa.PublicKey {
	out := make(map[string]*rsa.PublicKey, 2*len(byKID))
	aliases := map[string]*rsa.PublicKey{}
	refused := map[string]bool{}
	for kid, pub := range byKID {
		out[kid] = pub
		if id, err := KeyID(pub); err != nil || id != kid {
			continue
		}
		a, err := alias(pub)
		if err != nil || a == "" {
			continue
		}
		if _, taken := byKID[a]; taken || refused[a] {
			refused[a] = true
			continue
		}
		if _, shared := aliases[a]; shared {
			delete(aliases, a)
			refused[a] = true
			continue
		}
		aliases[a] = pub
	}
	for a, pub := range aliases {
		out[a] = pub
	}
	return out
}

// jwk is one RFC 7517 §4 / RFC 7518 §6.3 RSA public key.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

// JWKS renders the public keys (current first) as an RFC 7517 §5 JWK Set:
// {"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":..,"n":..,"e":..}]}
// with n and e as unpadded base64url big-endian integers (RFC 7518 §6.3.1).
func (s *Set) JWKS() []byte {
	out := jwks{Keys: []jwk{}}
	for _, k := range s.keys() {
		n, e := jwkNE(&k.Private.PublicKey)
		out.Keys = append(out.Keys, jwk{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: k.ID, N: n, E: e})
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic("signing: JWKS: " + err.Error())
	}
	return b
}

// maxJWKSBytes caps ParseJWKS input; callers fetching over HTTP should cap
// the body at the same size.
const maxJWKSBytes = 1 << 20

// ParseJWKS reads a JWK Set and returns its RS256 verification keys by kid.
// Keys of another kty are ignored (RFC 7517 §5: ignore what is not
// understood); an RSA key that is malformed, lacks a kid, says a use other
// than "sig" or an alg other than RS256, is outside 2048-8192 bits, or
// repeats a kid makes the whole set an error — fail closed.
func ParseJWKS(b []byte) (map[string]*rsa.PublicKey, error) {
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("%w: JWKS larger than %d bytes", ErrInvalidKey, maxJWKSBytes)
	}
	var set jwks
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: JWKS is not valid JSON", ErrInvalidKey)
	}
	out := make(map[string]*rsa.PublicKey, len(set.Keys))
	for i, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		if !validKID(k.Kid) {
			return nil, fmt.Errorf("%w: JWKS key %d has a missing or invalid kid", ErrInvalidKey, i)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("%w: JWKS key %q has use %q", ErrInvalidKey, k.Kid, k.Use)
		}
		if k.Alg != "" && k.Alg != "RS256" {
			return nil, fmt.Errorf("%w: JWKS key %q has alg %q", ErrInvalidKey, k.Kid, k.Alg)
		}
		if _, dup := out[k.Kid]; dup {
			return nil, fmt.Errorf("%w: JWKS repeats kid %q", ErrInvalidKey, k.Kid)
		}
		nb, err := base64.RawURLEncoding.DecodeString(k.N)
		if err != nil || len(nb) == 0 || nb[0] == 0 {
			return nil, fmt.Errorf("%w: JWKS key %q has a malformed n", ErrInvalidKey, k.Kid)
		}
		eb, err := base64.RawURLEncoding.DecodeString(k.E)
		if err != nil || len(eb) == 0 || len(eb) > 4 || eb[0] == 0 {
			return nil, fmt.Errorf("%w: JWKS key %q has a malformed e", ErrInvalidKey, k.Kid)
		}
		n := new(big.Int).SetBytes(nb)
		e := new(big.Int).SetBytes(eb)
		if bl := n.BitLen(); bl < MinBits || bl > maxBits {
			return nil, fmt.Errorf("%w: JWKS key %q has %d bits", ErrInvalidKey, k.Kid, bl)
		}
		if e.Int64() < 3 || e.Int64()%2 == 0 || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("%w: JWKS key %q has an unusable exponent", ErrInvalidKey, k.Kid)
		}
		out[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
	}
	return out, nil
}
