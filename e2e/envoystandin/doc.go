// Package envoystandin is a small Go data plane used by mcpgw's end-to-end
// tests when a real Envoy binary is not available (issue 8). It is test
// infrastructure only: nothing in mcpgw's shipped code imports it.
//
// The stand-in opens one ADS stream to the xDS server exactly like Envoy
// does (node id and cluster, CDS → EDS → LDS → RDS, ACK and NACK with
// version and nonce), and serves HTTP on the address it is given, applying
// only the Envoy v3 behaviour mcpgw's configuration uses:
//
//   - HTTP connection manager: RFC 3986 path normalization, merge_slashes,
//     path_with_escaped_slashes_action REJECT_REQUEST, virtual host and route
//     matching (path, prefix, path_separated_prefix), direct responses,
//     server header transformation, stream idle timeouts, x-request-id and
//     x-forwarded-* handling.
//   - ext_authz (gRPC, transport v3): CheckRequest built as Envoy builds it,
//     OkHttpResponse / DeniedHttpResponse applied as Envoy applies them,
//     status_on_error on any failure, per-route disable and
//     context_extensions merged from least to most specific.
//   - router: prefix_rewrite, regex_rewrite, host_rewrite_literal, route
//     timeouts and idle timeouts, EDS endpoints with pinned IPs, upstream TLS
//     with SNI and SAN validation against the configured CA, no redirect
//     following, streamed bodies flushed after every write,
//     suppress_envoy_headers.
//
// Everything else is NACKed: every xDS message is checked against an
// explicit allowlist of fields (see fields.go) so unsupported configuration
// fails loudly instead of being silently ignored. A NACK keeps the last good
// configuration, as Envoy does.
//
// Each behaviour names the Envoy documentation page it follows in a comment
// ("Envoy docs: ...").
package envoystandin
