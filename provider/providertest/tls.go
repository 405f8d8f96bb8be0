// Package providertest holds real test upstreams for the provider
// (second-level) OAuth flow: an upstream OAuth authorization server with
// fault knobs (NewAS) and a go-sdk MCP server behind
// auth.RequireBearerToken whose verifier accepts that server's tokens
// (NewMCP). Both listen on loopback with TLS certificates for "localhost"
// signed by a per-process test CA (CertPool), so tests exercise the
// https-only rule with a dev allowlist that names only the host
// "localhost" (Allowlist): a literal 127.0.0.1 or 169.254.169.254 stays
// refused. They are importable by other packages' tests (e2e).
package providertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"mcpgw/domain/addrpolicy"
)

var (
	caOnce sync.Once
	caPool *x509.CertPool
	leaf   tls.Certificate
	caErr  error
)

func initCA() {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		caErr = err
		return
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mcpgw providertest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		caErr = err
		return
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		caErr = err
		return
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		caErr = err
		return
	}
	caPool = x509.NewCertPool()
	caPool.AddCert(caCert)
	leaf = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// CertPool returns the pool holding the test CA that signed every test
// upstream's certificate.
func CertPool(t testing.TB) *x509.CertPool {
	t.Helper()
	caOnce.Do(initCA)
	if caErr != nil {
		t.Fatalf("providertest: test CA: %v", caErr)
	}
	return caPool
}

// Allowlist is the dev allowlist the tests use: exactly the host name
// "localhost". Addresses are not allowlisted, so metadata pointing at
// https://127.0.0.1 or https://169.254.169.254 is still refused.
func Allowlist() addrpolicy.Allowlist {
	return addrpolicy.Allowlist{Hosts: []string{"localhost"}}
}

// Client returns an HTTP client that trusts the test CA and follows no
// redirects.
func Client(t testing.TB) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: CertPool(t), MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 10 * time.Second,
	}
}

// startTLS listens on 127.0.0.1, builds the handler from the
// https://localhost:port base URL, and serves it with the localhost
// certificate until t ends.
func startTLS(t testing.TB, build func(base string) http.Handler) string {
	t.Helper()
	CertPool(t)
	srv := httptest.NewUnstartedServer(nil)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	base := "https://localhost:" + port
	srv.Config.Handler = build(base)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return base
}
