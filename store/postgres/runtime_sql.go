package postgres

// RuntimeSQL returns the one statement ResolveRuntime prepares and runs
// (parameters $1 config id, $2 user id, $3 instance id, all uuid), for
// tools that measure or explain it outside the store (bench/extauthz
// replays it with pgbench to show the database round-trip floor).
func RuntimeSQL() string { return resolveSQL }
