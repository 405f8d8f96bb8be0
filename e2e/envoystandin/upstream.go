package envoystandin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

var errNoHealthyUpstream = errors.New("no healthy upstream")

// clusterRuntime holds the connection pools of one cluster. It survives
// xDS updates that leave the cluster unchanged, like Envoy keeps its
// connection pools; a changed cluster gets a new runtime and the old pools
// are drained.
type clusterRuntime struct {
	cfg       *clusterConfig
	endpoints func() []netip.AddrPort
	rr        atomic.Uint64
	transport *http.Transport

	grpcMu   sync.Mutex
	grpcConn *grpc.ClientConn
}

func newClusterRuntime(cfg *clusterConfig, endpoints func() []netip.AddrPort) *clusterRuntime {
	rt := &clusterRuntime{cfg: cfg, endpoints: endpoints}
	tr := &http.Transport{
		// Envoy never adds Accept-Encoding or decompresses; bodies pass as is.
		DisableCompression:    true,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       cfg.idleTimeout,
		ResponseHeaderTimeout: 0,
	}
	var p http.Protocols
	switch {
	case cfg.http2 && cfg.tls == nil:
		p.SetUnencryptedHTTP2(true)
	case cfg.http2:
		p.SetHTTP2(true)
	default:
		p.SetHTTP1(true)
	}
	tr.Protocols = &p
	if cfg.tls != nil {
		tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return rt.dialTLS(ctx) }
	} else {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return rt.dial(ctx) }
	}
	rt.transport = tr
	return rt
}

// pick chooses the next endpoint round robin. Envoy docs: Load balancing —
// "Weighted round robin" (ROUND_ROBIN, the default lb_policy); weights are
// not configured by mcpgw.
func (rt *clusterRuntime) pick() (netip.AddrPort, error) {
	eps := rt.endpoints()
	if len(eps) == 0 {
		return netip.AddrPort{}, errNoHealthyUpstream
	}
	n := rt.rr.Add(1)
	return eps[int((n-1)%uint64(len(eps)))], nil
}

func (rt *clusterRuntime) dial(ctx context.Context) (net.Conn, error) {
	ep, err := rt.pick()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: rt.cfg.connectTimeout}
	return d.DialContext(ctx, "tcp", ep.String())
}

func (rt *clusterRuntime) dialTLS(ctx context.Context) (net.Conn, error) {
	c, err := rt.dial(ctx)
	if err != nil {
		return nil, err
	}
	conf := rt.cfg.tls.clientConfig()
	if rt.cfg.http2 && !containsString(conf.NextProtos, "h2") {
		conf.NextProtos = append([]string{"h2"}, conf.NextProtos...)
	}
	tc := tls.Client(c, conf)
	hctx, cancel := context.WithTimeout(ctx, rt.cfg.connectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// grpcClient returns the cluster's gRPC connection (ext_authz uses
// envoy_grpc clusters). The :authority is the configured authority or, as
// Envoy does, the cluster name.
//
// Envoy docs: GrpcService.EnvoyGrpc — "authority: The :authority header in
// the grpc request. If this field is not set, the authority header value
// will be cluster_name."
func (rt *clusterRuntime) grpcClient(authority string) (*grpc.ClientConn, error) {
	rt.grpcMu.Lock()
	defer rt.grpcMu.Unlock()
	if rt.grpcConn != nil {
		return rt.grpcConn, nil
	}
	if !rt.cfg.http2 {
		return nil, fmt.Errorf("cluster %q is not configured for HTTP/2 and cannot carry gRPC", rt.cfg.name)
	}
	if authority == "" {
		authority = rt.cfg.name
	}
	creds := insecure.NewCredentials()
	if rt.cfg.tls != nil {
		creds = credentials.NewTLS(rt.cfg.tls.clientConfig())
	}
	cc, err := grpc.NewClient("passthrough:///"+url.PathEscape(rt.cfg.name),
		grpc.WithTransportCredentials(creds),
		grpc.WithAuthority(authority),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return rt.dial(ctx) }),
	)
	if err != nil {
		return nil, err
	}
	rt.grpcConn = cc
	return cc, nil
}

// close drains the runtime's pools.
func (rt *clusterRuntime) close() {
	rt.transport.CloseIdleConnections()
	rt.grpcMu.Lock()
	defer rt.grpcMu.Unlock()
	if rt.grpcConn != nil {
		rt.grpcConn.Close()
		rt.grpcConn = nil
	}
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// clientConfig builds the TLS client configuration of an
// UpstreamTlsContext.
//
// Envoy docs: UpstreamTlsContext.sni — "SNI string to use when creating TLS
// backend connections" (no SNI when empty); CertificateValidationContext.
// trusted_ca — the chain must verify against these roots (the hostname is
// not checked by the chain verification itself); match_typed_subject_alt_names
// — "An optional list of subject alternative name matchers. If specified,
// Envoy will verify that the Subject Alternative Name of the presented
// certificate matches one of the specified matchers."
func (tc *tlsConfig) clientConfig() *tls.Config {
	return &tls.Config{
		ServerName:         tc.sni,
		NextProtos:         append([]string(nil), tc.alpn...),
		MinVersion:         tc.minVersion,
		MaxVersion:         tc.maxVersion,
		InsecureSkipVerify: true, // replaced by VerifyConnection below, which implements Envoy's rules
		VerifyConnection:   tc.verify,
	}
}

func (tc *tlsConfig) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("upstream presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         tc.roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   time.Now(),
	}); err != nil {
		return fmt.Errorf("certificate verify failed: %w", err)
	}
	if len(tc.sans) == 0 {
		return nil
	}
	for _, m := range tc.sans {
		if m.matchCert(leaf) {
			return nil
		}
	}
	return errors.New("certificate subject alternative names match none of match_typed_subject_alt_names")
}

func (m sanMatcher) matchCert(c *x509.Certificate) bool {
	switch m.typ {
	case tlsv3.SubjectAltNameMatcher_DNS:
		for _, d := range c.DNSNames {
			// Envoy docs: SubjectAltNameMatcher — for DNS, "a wildcard
			// DNS SAN in the certificate (*.example.com) matches an exact
			// matcher value in that domain (api.example.com)".
			if m.m.kind == "exact" && strings.HasPrefix(d, "*.") {
				if i := strings.IndexByte(m.m.exact, '.'); i > 0 && strings.EqualFold(m.m.exact[i+1:], d[2:]) {
					return true
				}
				continue
			}
			if m.m.match(d) {
				return true
			}
		}
	case tlsv3.SubjectAltNameMatcher_URI:
		for _, u := range c.URIs {
			if m.m.match(u.String()) {
				return true
			}
		}
	case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
		for _, ip := range c.IPAddresses {
			if m.m.match(ip.String()) {
				return true
			}
		}
	case tlsv3.SubjectAltNameMatcher_EMAIL:
		for _, e := range c.EmailAddresses {
			if m.m.match(e) {
				return true
			}
		}
	}
	return false
}
