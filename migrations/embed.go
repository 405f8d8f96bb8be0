// Package migrations holds mcpgw's Postgres schema as numbered goose SQL
// files, embedded so the binary carries its own schema (`mcpgw migrate
// up|status`). Each file runs in its own transaction (goose's default), and
// goose records applied versions in goose_db_version.
//
// Rules for new migrations: never edit a released file, add the next number;
// every enum column gets a CHECK; every foreign key states its ON DELETE on
// purpose (see the comments in 00001_init.sql).
package migrations

import "embed"

// FS holds the *.sql migration files at its root.
//
//go:embed *.sql
var FS embed.FS
