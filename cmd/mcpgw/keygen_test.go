package main

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mcpgw/domain/signing"
)

// TestKeygenOpenSSL: the signing key keygen writes is plain PKCS#8 that the
// machine's OpenSSL reads, and its kid is the RFC 7638 thumbprint of the
// public key OpenSSL sees in that file — the same kid the server loads and
// publishes in its JWKS.
func TestKeygenOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required to check that keygen's key file is readable by it (Debian: apt-get install openssl): %v", err)
	}
	dir := t.TempDir()
	code, out, errs := runCmd(t, nil, "keygen", "--dir", dir)
	if code != exitOK {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	signPath := filepath.Join(dir, "signing-key.pem")
	m := regexp.MustCompile(`\(kid ([A-Za-z0-9_-]+)\)`).FindStringSubmatch(errs)
	if m == nil {
		t.Fatalf("keygen did not print the kid:\n%s", errs)
	}
	kid := m[1]

	if b, err := exec.Command(openssl, "pkey", "-in", signPath, "-noout").CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey -in %s -noout: %v\n%s", signPath, err, b)
	}
	der, err := exec.Command(openssl, "pkey", "-in", signPath, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl pkey -pubout: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	rpub, ok := pub.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("openssl read a %T", pub)
	}
	// The thumbprint written out by hand (RFC 7638 §3.2), independent of
	// signing.KeyID.
	canon := `{"e":"` + base64.RawURLEncoding.EncodeToString([]byte{1, 0, 1}) + `","kty":"RSA","n":"` + base64.RawURLEncoding.EncodeToString(rpub.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(canon))
	if rpub.E != 65537 || base64.RawURLEncoding.EncodeToString(sum[:]) != kid {
		t.Fatalf("printed kid %q is not the RFC 7638 thumbprint of the key OpenSSL reads", kid)
	}

	c := loadValidate(t, prodEnv(t, out))
	set := c.SigningKeys()
	if set.Current.ID != kid || !set.Current.Private.PublicKey.Equal(rpub) {
		t.Fatalf("server loads kid %q, keygen printed %q", set.Current.ID, kid)
	}
	jwks, err := signing.ParseJWKS(set.JWKS())
	if err != nil || jwks[kid] == nil || !jwks[kid].Equal(rpub) {
		t.Fatalf("JWKS lacks kid %q: %v", kid, err)
	}
}

// TestKeygenRotationFromLegacyKey: a signing key file written by an older
// keygen (PKCS#8 with a "Key-Id:" PEM header) keeps the header's kid when
// loaded, both as the current key and, after a rotation, as a previous key,
// so tokens signed under it keep verifying.
func TestKeygenRotationFromLegacyKey(t *testing.T) {
	k, err := signing.Generate(2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		t.Fatal(err)
	}
	const legacyID = "Ab3-x_9QzLmN0pQr" // shaped like the 16-character ids older versions wrote
	dir := t.TempDir()
	oldPath := filepath.Join(dir, "signing-key.pem")
	legacy := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Key-Id": legacyID}, Bytes: der})
	if err := os.WriteFile(oldPath, legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	_, ringOut, _ := runCmd(t, nil, "keygen", "--dir", t.TempDir())
	var ring string
	for _, l := range strings.Split(ringOut, "\n") {
		if strings.HasPrefix(l, "MCPGW_ENCRYPTION_KEYS=") {
			ring = l
		}
	}
	env := prodEnv(t, "MCPGW_SIGNING_KEY_FILE="+oldPath+"\n"+ring)
	if c := loadValidate(t, env); c.SigningKeys().Current.ID != legacyID {
		t.Fatalf("legacy current key loads as %q, want the header's %q", c.SigningKeys().Current.ID, legacyID)
	}

	code, out, errs := runCmd(t, env, "keygen", "--dir", dir, "--signing-key-out", "signing-key-2.pem", "--encryption-key-out", "encryption-key-2")
	if code != exitOK {
		t.Fatalf("rotate: %s", errs)
	}
	if !strings.Contains(out, "MCPGW_PREVIOUS_SIGNING_KEY_FILES="+oldPath) {
		t.Fatalf("legacy key not kept as previous:\n%s", out)
	}
	c := loadValidate(t, prodEnv(t, out))
	if pub, ok := c.SigningKeys().PublicKey(legacyID); !ok || !pub.Equal(&k.Private.PublicKey) {
		t.Fatal("legacy kid no longer verifies after the rotation")
	}
	if jwks, err := signing.ParseJWKS(c.SigningKeys().JWKS()); err != nil || jwks[legacyID] == nil || jwks[c.SigningKeys().Current.ID] == nil {
		t.Fatalf("JWKS after rotation: %v", err)
	}
	if b, _ := os.ReadFile(oldPath); string(b) != string(legacy) {
		t.Fatal("rotation rewrote the legacy key file")
	}
}
