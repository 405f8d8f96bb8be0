package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"mcpgw/store"
)

var _ store.ReencryptStore = (*Store)(nil)

// physical maps a logical encrypted column (store.EncryptedColumn, which is
// also its AAD) to where it lives: the grant is stored on the instance row.
// Registrations are keyed by (config_id, config_version) and handled apart.
var physical = map[store.EncryptedColumn]struct{ table, column string }{
	store.ColConfigStaticHeaders:             {"configs", "static_headers"},
	store.ColConfigProviderClientCredentials: {"configs", "provider_client_credentials"},
	store.ColGrantAccessToken:                {"instances", "grant_access_token"},
	store.ColGrantRefreshToken:               {"instances", "grant_refresh_token"},
}

// ListCiphertexts implements store.ReencryptStore: keyset pagination on the
// primary key.
func (s *Store) ListCiphertexts(ctx context.Context, col store.EncryptedColumn, after string, limit int) ([]store.CiphertextRow, error) {
	if err := store.ValidateListCiphertexts(col, after, limit); err != nil {
		return nil, err
	}
	var (
		rows pgx.Rows
		err  error
	)
	if col == store.ColProviderRegistration {
		afterID, afterV := "00000000-0000-0000-0000-000000000000", int64(0)
		if after != "" {
			afterID, afterV, _ = store.ParseRegistrationRowID(after)
		}
		rows, err = s.pool.Query(ctx, `SELECT config_id::text, config_version, ciphertext FROM provider_registrations
			WHERE (config_id, config_version) > ($1::uuid, $2) ORDER BY config_id, config_version LIMIT $3`, afterID, afterV, limit)
		if err != nil {
			return nil, mapErr("list ciphertexts", err)
		}
		defer rows.Close()
		var out []store.CiphertextRow
		for rows.Next() {
			var id string
			var v int64
			var ct []byte
			if err := rows.Scan(&id, &v, &ct); err != nil {
				return nil, mapErr("list ciphertexts", err)
			}
			out = append(out, store.CiphertextRow{RowID: store.RegistrationRowID(id, v), Value: ct})
		}
		return out, mapErr("list ciphertexts", rows.Err())
	}

	p := physical[col]
	// Table and column names come from the fixed map above, never from input.
	q := fmt.Sprintf(`SELECT id::text, %[2]s FROM %[1]s WHERE %[2]s IS NOT NULL AND ($1 = '' OR id > $1::uuid) ORDER BY id LIMIT $2`, p.table, p.column)
	rows, err = s.pool.Query(ctx, q, after, limit)
	if err != nil {
		return nil, mapErr("list ciphertexts", err)
	}
	defer rows.Close()
	var out []store.CiphertextRow
	for rows.Next() {
		var r store.CiphertextRow
		if err := rows.Scan(&r.RowID, &r.Value); err != nil {
			return nil, mapErr("list ciphertexts", err)
		}
		out = append(out, r)
	}
	return out, mapErr("list ciphertexts", rows.Err())
}

// ReplaceCiphertext implements store.ReencryptStore with one conditional
// UPDATE (compare-and-swap on the old value); on no match a follow-up
// SELECT tells stale from gone. It deliberately leaves versions and
// updated_at alone and sends no NOTIFY: the plaintext did not change.
func (s *Store) ReplaceCiphertext(ctx context.Context, col store.EncryptedColumn, rowID string, prev, next []byte) error {
	if err := store.ValidateReplaceCiphertext(col, rowID, prev, next); err != nil {
		return err
	}
	var (
		update, exists string
		args           []any
	)
	if col == store.ColProviderRegistration {
		id, v, _ := store.ParseRegistrationRowID(rowID)
		update = `UPDATE provider_registrations SET ciphertext = $4 WHERE config_id = $1 AND config_version = $2 AND ciphertext = $3`
		exists = `SELECT true FROM provider_registrations WHERE config_id = $1 AND config_version = $2`
		args = []any{id, v, prev, next}
	} else {
		p := physical[col]
		update = fmt.Sprintf(`UPDATE %[1]s SET %[2]s = $3 WHERE id = $1 AND %[2]s = $2`, p.table, p.column)
		exists = fmt.Sprintf(`SELECT true FROM %[1]s WHERE id = $1 AND %[2]s IS NOT NULL`, p.table, p.column)
		args = []any{rowID, prev, next}
	}
	tag, err := s.pool.Exec(ctx, update, args...)
	if err != nil {
		return mapErr("replace ciphertext", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var found bool
	err = s.pool.QueryRow(ctx, exists, args[:len(args)-2]...).Scan(&found)
	if err != nil {
		return mapErr("replace ciphertext", err)
	}
	return fmt.Errorf("postgres: replace ciphertext: %w", store.ErrStale)
}
