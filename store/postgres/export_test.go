package postgres

// ResolveSQL exposes the runtime statement to the external tests (EXPLAIN).
const ResolveSQL = resolveSQL

// Send exposes the non-blocking change-feed delivery for unit tests.
var Send = send
