package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// testCA is a throwaway CA whose certificate file is xds.upstream_ca_file:
// the data plane validates upstream certificates (SNI + SAN) against it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
	pool *x509.CertPool
}

func newTestCA(t testing.TB, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mcpgw e2e test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, file: file, pool: pool}
}

// leaf issues a server certificate for the given IP SANs and DNS names.
func (ca *testCA) leaf(t testing.TB, ips []net.IP, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "upstream"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: ips, DNSNames: names, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// upstream is the remote MCP server (Go MCP SDK, streamable HTTP, over TLS
// with the test CA) plus a few raw HTTP endpoints for the security
// scenarios. It records every request path and the headers of every
// request it received.
type upstream struct {
	srv *httptest.Server
	url string // https://127.0.0.1:port

	mu       sync.Mutex
	paths    []string
	headers  []http.Header
	sseGate  chan struct{} // closed by the test after it saw the first SSE event
	redirect *httptest.Server
	redirHit []http.Header

	// as is the upstream's own OAuth server, protecting /protected/mcp
	// (auth mode oauth_dynamic).
	as *upstreamAS
}

const largeResultBytes = 1 << 20

func startUpstream(t testing.TB, ca *testCA) *upstream {
	t.Helper()
	u := &upstream{sseGate: make(chan struct{})}
	// The redirect target: another host (plain http here) that must never
	// be contacted through the gateway, let alone receive a credential.
	u.redirect = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.redirHit = append(u.redirHit, r.Header.Clone())
		u.mu.Unlock()
		fmt.Fprint(w, "redirect target reached")
	}))
	t.Cleanup(u.redirect.Close)

	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return newMCPServer() }, nil)
	mux := http.NewServeMux()
	mux.Handle("/base/mcp", mcpHandler)
	mux.HandleFunc("/base/mcp/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, u.redirect.URL+"/stolen", http.StatusFound)
	})
	mux.HandleFunc("/base/mcp/sse", u.sse)
	mux.HandleFunc("/base/mcp/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "inside base: %s", r.URL.EscapedPath())
	})
	u.as = newUpstreamAS(func() string { return u.url })
	u.as.mount(mux)
	u.as.mountProtectedMCP(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Anything outside the base path: the path-escape scenario asserts
		// nothing ever lands here.
		http.Error(w, "outside the base path", http.StatusTeapot)
	})
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.paths = append(u.paths, r.URL.EscapedPath())
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, []net.IP{net.IPv4(127, 0, 0, 1)}, "localhost")}}
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	u.url = u.srv.URL
	return u
}

// sse streams 1,000 events in order. After the first one it waits until
// the test has received it, so a data plane that buffers the response
// can never pass (the first event must arrive before the last exists).
func (u *upstream) sse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fl := w.(http.Flusher)
	fmt.Fprint(w, "id: 0\ndata: event 0\n\n")
	fl.Flush()
	select {
	case <-u.sseGate:
	case <-r.Context().Done():
		return
	case <-time.After(convergence):
		return
	}
	for i := 1; i < 1000; i++ {
		fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
		fl.Flush()
	}
}

func (u *upstream) seenPaths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.paths...)
}

func (u *upstream) allHeaders() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.headers...)
}

func (u *upstream) redirectHits() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.redirHit...)
}

// newMCPServer is the upstream MCP server: tools that echo the headers
// they received, stream progress notifications over SSE, and return a
// large result.
func newMCPServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "e2e-upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo_headers", Description: "returns the HTTP headers of the request as JSON"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			h := map[string][]string{}
			if req.Extra != nil {
				for k, v := range req.Extra.Header {
					h[strings.ToLower(k)] = v
				}
			}
			b, _ := json.Marshal(h)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}}, nil, nil
		})
	type progressIn struct {
		Steps int `json:"steps"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "progress", Description: "sends progress notifications, then answers"},
		func(ctx context.Context, req *mcp.CallToolRequest, in progressIn) (*mcp.CallToolResult, any, error) {
			tok := req.Params.GetProgressToken()
			for i := 1; i <= in.Steps; i++ {
				if tok != nil {
					if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: tok, Progress: float64(i), Total: float64(in.Steps), Message: fmt.Sprintf("step %d", i)}); err != nil {
						return nil, nil, err
					}
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("done %d", in.Steps)}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "large", Description: "returns a 1 MiB text result"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("x", largeResultBytes)}}}, nil, nil
		})
	return s
}
