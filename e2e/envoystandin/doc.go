// Package envoystandin is a small Go data plane used by mcpgw's end-to-end
// tests when a real Envoy binary is not available (issue 8). It is test
// infrastructure only: nothing in mcpgw's shipped code imports it.
//
// The stand-in opens one ADS stream to the xDS server exactly like Envoy
// does (node id and cluster, CDS → EDS → LDS → RDS, ACK and NACK with
// version and nonce, reconnect keeping the last configuration), and serves
// HTTP/1.1 and h2c on the address it is given, applying only the Envoy v3
// behaviour mcpgw's configuration uses:
//
//   - HTTP connection manager: RFC 3986 path normalization exactly as
//     Envoy's (Chromium-derived) canonicalizer, merge_slashes,
//     path_with_escaped_slashes_action REJECT_REQUEST, virtual host and
//     route matching (path, prefix, path_separated_prefix, case_sensitive),
//     direct responses, server_name / server_header_transformation,
//     stream_idle_timeout, request_timeout, use_remote_address with
//     internal_address_config, x-request-id and x-forwarded-* handling,
//     listener warming.
//   - ext_authz (gRPC, transport v3): CheckRequest built as Envoy builds it,
//     OkHttpResponse / DeniedHttpResponse / error_response applied as Envoy
//     applies them, status_on_error on any failure or timeout, per-route
//     disable and context_extensions merged from least to most specific.
//   - router: prefix_rewrite, regex_rewrite, host_rewrite_literal, route
//     timeout and idle_timeout, EDS and STATIC clusters with IP endpoints
//     (round robin), upstream TLS with SNI and SAN validation against the
//     configured CA, HTTP/1.1 or HTTP/2 upstreams, no redirect following,
//     request and response bodies streamed (flushed after every write),
//     suppress_envoy_headers.
//
// Everything else is NACKed: every xDS message is checked against an
// explicit allowlist of fields (onlyFields in fields.go, called for each
// message in config.go) and against the protos' generated ValidateAll, so
// unsupported configuration fails loudly instead of being silently
// ignored. A NACK keeps the last good configuration, as Envoy does. Fields
// accepted without effect are only those with no effect on traffic
// (stat prefixes, access logs, names).
//
// Use Start with Options, or OptionsFromBootstrap to start from one of
// mcpgw's envoy/*.yaml bootstrap files (full ADS, or the operator-owned
// static listener where only RDS/CDS/EDS come over ADS). Status, WaitFor,
// Ready and WaitForRoutes let tests wait for convergence without sleeping.
// cmd/envoy-standin runs it as a process with Envoy's command line
// (-c bootstrap.yaml --service-node ...), for harnesses that start
// $ENVOY_BIN and the stand-in the same way.
//
// Known differences from Envoy, none of which mcpgw's configuration
// exercises: the listener's address is bound once (a later change of
// address keeps the first socket), or replaced by Options.ListenAddr;
// request_headers_timeout is Options.RequestHeadersTimeout because
// Go's HTTP server fixes it at start; initial_fetch_timeout is not
// modelled (initialization waits for CDS); weights, priorities, retries,
// circuit breakers, health checks and access logs are not implemented;
// no downstream TLS.
//
// Each behaviour names the Envoy documentation page it follows in a comment
// ("Envoy docs: ...").
package envoystandin
