package postgres

// ResolveSQL exposes the runtime statement to the external tests (EXPLAIN).
const ResolveSQL = resolveSQL
