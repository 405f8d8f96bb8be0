package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

// changeChannel is the NOTIFY channel the migration's trigger uses.
const changeChannel = "mcpgw_changes"

// listenCheck is how long the listener waits for a notification before it
// pings the connection, so a silently dead TCP connection is noticed.
const listenCheck = 30 * time.Second

// Watch delivers config/route/assignment changes from LISTEN/NOTIFY on a
// dedicated connection (a pooled connection cannot hold a LISTEN). The
// connection is established before Watch returns, so every change committed
// afterwards is delivered. When the connection is lost, Watch reconnects
// with exponential backoff and then sends ChangeResync, because
// notifications sent while disconnected are gone (DESIGN §8). A reader that
// falls behind by more than the buffer gets ChangeResync instead of the
// dropped changes.
func (s *Store) Watch(ctx context.Context) (<-chan store.Change, error) {
	conn, err := s.listenConn(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan store.Change, s.watchBuffer)
	go s.watchLoop(ctx, conn, out)
	return out, nil
}

func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return nil, mapErr("watch", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+changeChannel); err != nil {
		conn.Close(context.Background())
		return nil, mapErr("watch", err)
	}
	return conn, nil
}

func (s *Store) watchLoop(ctx context.Context, conn *pgx.Conn, out chan store.Change) {
	defer close(out)
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	backoff := s.reconnectMin
	for {
		if conn == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			c, err := s.listenConn(ctx)
			if err != nil {
				s.log.Warn("store change feed: reconnect failed", "err", err, "retry_in", backoff)
				backoff = min(backoff*2, s.reconnectMax)
				continue
			}
			conn, backoff = c, s.reconnectMin
			s.log.Info("store change feed: reconnected")
			send(out, store.Change{Kind: store.ChangeResync})
		}
		wctx, cancel := context.WithTimeout(ctx, listenCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
				// Quiet period: prove the connection is alive.
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err = conn.Ping(pctx)
				cancel()
				if err == nil {
					continue
				}
			}
			s.log.Warn("store change feed: listen connection lost", "err", err)
			conn.Close(context.Background())
			conn = nil
			continue
		}
		var c struct {
			Kind     string `json:"kind"`
			ConfigID string `json:"config_id"`
		}
		if json.Unmarshal([]byte(n.Payload), &c) != nil {
			send(out, store.Change{Kind: store.ChangeResync})
			continue
		}
		send(out, store.Change{Kind: store.ChangeKind(c.Kind), ConfigID: c.ConfigID})
	}
}

// send delivers c without ever blocking the listener. When the buffer is
// full the queued changes are dropped and replaced by one ChangeResync,
// which tells the reader to rebuild everything.
func send(out chan store.Change, c store.Change) {
	select {
	case out <- c:
		return
	default:
	}
	for {
		select {
		case <-out:
			continue
		default:
		}
		break
	}
	select {
	case out <- store.Change{Kind: store.ChangeResync}:
	default:
	}
}

// Cleanup deletes expired or terminal OAuth artifacts, ended rate-limit
// windows and old audit events (DESIGN §9). Consumed codes and refresh
// tokens are kept until they expire, so reuse is still detected as reuse.
func (s *Store) Cleanup(ctx context.Context, now, auditBefore time.Time) (store.CleanupCounts, error) {
	if err := first(store.ValidateTime("now", now), store.ValidateTime("audit_before", auditBefore)); err != nil {
		return store.CleanupCounts{}, err
	}
	var n store.CleanupCounts
	err := s.tx(ctx, "cleanup", func(tx pgx.Tx) error {
		for _, d := range []struct {
			q   string
			arg time.Time
			dst *int64
		}{
			{`DELETE FROM auth_requests WHERE expires_at <= $1`, now, &n.AuthRequests},
			{`DELETE FROM consent_tickets WHERE expires_at <= $1 OR consumed_at IS NOT NULL`, now, &n.ConsentTickets},
			{`DELETE FROM auth_codes WHERE expires_at <= $1`, now, &n.AuthCodes},
			{`DELETE FROM refresh_tokens WHERE expires_at <= $1`, now, &n.RefreshTokens},
			{`DELETE FROM pending_provider_states WHERE expires_at <= $1 OR consumed_at IS NOT NULL`, now, &n.PendingStates},
			{`DELETE FROM sessions WHERE expires_at <= $1 OR revoked_at IS NOT NULL`, now, &n.Sessions},
			{`DELETE FROM rate_limit_windows WHERE window_end <= $1`, now, &n.RateLimits},
			{`DELETE FROM audit_events WHERE time < $1`, auditBefore, &n.AuditEvents},
		} {
			tag, err := tx.Exec(ctx, d.q, d.arg)
			if err != nil {
				return err
			}
			*d.dst = tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return store.CleanupCounts{}, err
	}
	return n, nil
}

// TryLeader runs fn only while holding a session-level advisory lock named
// after name on one pooled connection; another replica (or goroutine)
// holding it makes TryLeader return false without running fn.
func (s *Store) TryLeader(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error) {
	if err := store.ValidateLockName(name); err != nil {
		return false, err
	}
	if fn == nil {
		return false, store.Invalid("fn", "required")
	}
	h := fnv.New64a()
	h.Write([]byte("mcpgw-leader:" + name))
	key := int64(h.Sum64())
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, mapErr("try leader", err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		return false, mapErr("try leader", err)
	}
	if !got {
		return false, nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// The session may still hold the lock: destroy the connection
			// so the lock dies with it.
			conn.Conn().Close(uctx)
		}
	}()
	return true, fn(ctx)
}
