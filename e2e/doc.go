// Package e2e holds mcpgw's end-to-end scenarios (issue 8): the whole
// system — Postgres, `mcpgw serve` as separate processes built from this
// repository, a data plane, real MCP clients and a real MCP server from the
// Go SDK — exercised from the outside, the way an operator and an MCP
// client see it.
//
// The data plane is real Envoy when ENVOY_BIN names an Envoy binary (its
// bootstrap is written from envoy/bootstrap-ads.yaml with the test's
// addresses substituted), otherwise the in-repo stand-in
// (e2e/envoystandin), which consumes the same xDS over ADS. Every scenario
// waits for convergence by observing behaviour with a deadline, never by
// sleeping, so the same tests run against either data plane.
//
// The package has no non-test code apart from this comment; run it with
// `go test ./e2e/...` (README "End-to-end tests").
package e2e
