// Package postgres is the Postgres implementation of store.Store on a pgx v5
// pool. Every method validates its input with the shared store validators
// before touching the database, maps database failures onto the store
// sentinel errors (unique violation → ErrConflict, no rows → ErrNotFound,
// connection loss or timeout → ErrUnavailable) and runs each multi-row change
// (cascades, rotations, reassignments) in one transaction together with its
// audit event (DESIGN §7, §9).
//
// Error messages name the operation and the sentinel only; they never carry
// query parameters, hashes or ciphertext (Postgres error details, which can
// echo key values, are dropped).
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"mcpgw/migrations"
	"mcpgw/store"
)

// Store is a store.Store backed by Postgres. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	listen *pgx.ConnConfig // config for the dedicated LISTEN connection
	// watchBuffer is the per-watcher channel capacity.
	watchBuffer int
	// reconnectMin/Max bound the LISTEN reconnect backoff.
	reconnectMin, reconnectMax time.Duration
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	log          *slog.Logger
	maxConns     int32
	configure    func(*pgxpool.Config)
	watchBuffer  int
	reconnectMin time.Duration
	reconnectMax time.Duration
}

// WithLogger sets the logger (default slog.Default()). The store logs only
// operational events (LISTEN reconnects), never values.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMaxConns sets the pool size (default: pgxpool's, max(4, NumCPU)).
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

// WithPoolConfig lets the caller adjust the parsed pool configuration
// (timeouts, tracers) before the pool is created. A PrepareConn (or
// BeforeAcquire) set here runs after the store's own dead-connection check
// (conncheck.go).
func WithPoolConfig(fn func(*pgxpool.Config)) Option { return func(o *options) { o.configure = fn } }

// WithWatchBuffer sets how many changes a Watch channel buffers before a
// slow reader is sent ChangeResync instead (default 256).
func WithWatchBuffer(n int) Option { return func(o *options) { o.watchBuffer = n } }

// WithReconnectBackoff bounds the LISTEN connection's reconnect backoff
// (default 100ms doubling to 5s).
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.reconnectMin, o.reconnectMax = min, max }
}

// Open connects a pool to dsn and checks that the database answers. It does
// not migrate; run Migrate first (mcpgw migrate up). A DSN that does not
// parse yields ErrInvalid; an unreachable server ErrUnavailable.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{log: slog.Default(), watchBuffer: 256, reconnectMin: 100 * time.Millisecond, reconnectMax: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error can quote the DSN (and so a password): drop it.
		return nil, store.Invalid("dsn", "does not parse")
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	if o.configure != nil {
		o.configure(cfg)
	}
	// Dead connections left by an outage are dropped before use
	// (conncheck.go).
	installConnCheck(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, mapErr("open", err)
	}
	s := &Store{
		pool:         pool,
		log:          o.log,
		listen:       cfg.ConnConfig.Copy(),
		watchBuffer:  o.watchBuffer,
		reconnectMin: o.reconnectMin,
		reconnectMax: o.reconnectMax,
	}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Pool exposes the underlying pool for benchmarks and tests in this module.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping reports whether the database answers. Pooled connections that died
// in an outage are skipped, not pinged (conncheck.go), so Ping answers for
// the database as it is now, from the first call after it is back.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return mapErr("ping", err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Migrate applies every pending embedded migration to the database at dsn
// (goose, each migration in its own transaction, serialized across
// processes by goose's Postgres session advisory lock).
func Migrate(ctx context.Context, dsn string) error {
	p, db, err := provider(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate up: %w", classify(err))
	}
	return nil
}

// MigrationStatus writes one line per embedded migration (applied or
// pending, with the time applied) to w.
func MigrationStatus(ctx context.Context, dsn string, w io.Writer) error {
	p, db, err := provider(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migration status: %w", classify(err))
	}
	for _, m := range st {
		applied := "-"
		if m.State == goose.StateApplied {
			applied = m.AppliedAt.UTC().Format(time.RFC3339)
		}
		if _, err := fmt.Fprintf(w, "%-8s %-28s %s\n", m.State, pathBase(m.Source.Path), applied); err != nil {
			return err
		}
	}
	return nil
}

func pathBase(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func provider(dsn string) (*goose.Provider, *sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, nil, store.Invalid("dsn", "does not parse")
	}
	db := stdlib.OpenDB(*cfg)
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	return p, db, nil
}

// classify wraps err with ErrUnavailable when it is a connection problem,
// leaving other (schema) errors as they are.
func classify(err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// mapErr converts a pgx/pgconn error into a store sentinel with op as
// context. Errors that are already store errors pass through.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{store.ErrNotFound, store.ErrConflict, store.ErrConsumed, store.ErrExpired,
		store.ErrRevoked, store.ErrStale, store.ErrInvalid, store.ErrUnavailable} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, store.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505", "23P01": // unique_violation, exclusion_violation
			return fmt.Errorf("postgres: %s: %s: %w", op, pe.ConstraintName, store.ErrConflict)
		case "23503": // foreign_key_violation: a referenced row is missing
			return fmt.Errorf("postgres: %s: %s: %w", op, pe.ConstraintName, store.ErrNotFound)
		case "23514", "23502", "22P02", "22001", "22003": // check, not null, bad text repr, too long, out of range
			return fmt.Errorf("postgres: %s: %s: %w", op, pe.ConstraintName, store.ErrInvalid)
		case "40001", "40P01", "55P03": // serialization failure, deadlock, lock not available
			return fmt.Errorf("postgres: %s: %w (SQLSTATE %s)", op, store.ErrConflict, pe.Code)
		}
		if isUnavailable(err) {
			return fmt.Errorf("postgres: %s: %w (SQLSTATE %s)", op, store.ErrUnavailable, pe.Code)
		}
		// Anything else is unexpected; keep only the code and message (no
		// detail, which can echo values) and fail closed.
		return fmt.Errorf("postgres: %s: %w: SQLSTATE %s", op, store.ErrUnavailable, pe.Code)
	}
	// Not a server error: connection refused, reset, timeout, pool closed,
	// context ended. All of them are infrastructure failures.
	return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrUnavailable, err)
}

// isUnavailable reports whether err means the database could not be used:
// connection failures, timeouts, cancellations and the server-side codes for
// shutdown, resource exhaustion and connection loss.
func isUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "53", "57", "58": // connection exception, insufficient resources, operator intervention, system error
			return true
		}
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// tx runs fn in a transaction, committing when fn returns nil. Serialization
// failures and deadlocks are retried a few times (the statements are
// idempotent within a fresh transaction); the final error is mapped.
func (s *Store) tx(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil {
			return nil
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01") && ctx.Err() == nil {
			continue
		}
		break
	}
	return mapErr(op, err)
}
