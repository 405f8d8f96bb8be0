package memory

import (
	"bytes"
	"context"
	"slices"

	"mcpgw/store"
)

var _ store.ReencryptStore = (*Store)(nil)

// ListCiphertexts implements store.ReencryptStore.
func (s *Store) ListCiphertexts(ctx context.Context, col store.EncryptedColumn, after string, limit int) ([]store.CiphertextRow, error) {
	if err := store.ValidateListCiphertexts(col, after, limit); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var rows []store.CiphertextRow
	add := func(id string, v []byte) {
		if len(v) > 0 && id > after {
			rows = append(rows, store.CiphertextRow{RowID: id, Value: bytes.Clone(v)})
		}
	}
	switch col {
	case store.ColConfigStaticHeaders:
		for id, c := range s.configs {
			add(id, c.StaticHeaders)
		}
	case store.ColConfigProviderClientCredentials:
		for id, c := range s.configs {
			add(id, c.Provider.ClientCredentials)
		}
	case store.ColGrantAccessToken:
		for id, g := range s.grants {
			add(id, g.AccessToken)
		}
	case store.ColGrantRefreshToken:
		for id, g := range s.grants {
			add(id, g.RefreshToken)
		}
	case store.ColProviderRegistration:
		for k, r := range s.regs {
			id := store.RegistrationRowID(k.config, k.version)
			if regAfter(k, after) {
				rows = append(rows, store.CiphertextRow{RowID: id, Value: bytes.Clone(r.Ciphertext)})
			}
		}
		slices.SortFunc(rows, func(a, b store.CiphertextRow) int { return compareRegRow(a.RowID, b.RowID) })
		if len(rows) > limit {
			rows = rows[:limit]
		}
		return rows, nil
	}
	slices.SortFunc(rows, func(a, b store.CiphertextRow) int {
		switch {
		case a.RowID < b.RowID:
			return -1
		case a.RowID > b.RowID:
			return 1
		}
		return 0
	})
	if len(rows) > limit {
		rows = rows[:limit]
	}
	return rows, nil
}

// Registration rows order by (config id, version) numerically, as in
// Postgres.
func regAfter(k regKey, after string) bool {
	if after == "" {
		return true
	}
	id, v, _ := store.ParseRegistrationRowID(after)
	return k.config > id || (k.config == id && k.version > v)
}

func compareRegRow(a, b string) int {
	ai, av, _ := store.ParseRegistrationRowID(a)
	bi, bv, _ := store.ParseRegistrationRowID(b)
	switch {
	case ai < bi:
		return -1
	case ai > bi:
		return 1
	case av < bv:
		return -1
	case av > bv:
		return 1
	}
	return 0
}

// ReplaceCiphertext implements store.ReencryptStore.
func (s *Store) ReplaceCiphertext(ctx context.Context, col store.EncryptedColumn, rowID string, prev, next []byte) error {
	if err := store.ValidateReplaceCiphertext(col, rowID, prev, next); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	var slot *[]byte
	switch col {
	case store.ColConfigStaticHeaders, store.ColConfigProviderClientCredentials:
		c, ok := s.configs[rowID]
		if !ok {
			return notFound("config")
		}
		slot = &c.StaticHeaders
		if col == store.ColConfigProviderClientCredentials {
			slot = &c.Provider.ClientCredentials
		}
		if len(*slot) > 0 && bytes.Equal(*slot, prev) {
			// UpdateConfig's optimistic check must see this write.
			s.configRev[rowID]++
		}
	case store.ColGrantAccessToken, store.ColGrantRefreshToken:
		g, ok := s.grants[rowID]
		if !ok {
			return notFound("grant")
		}
		slot = &g.AccessToken
		if col == store.ColGrantRefreshToken {
			slot = &g.RefreshToken
		}
	case store.ColProviderRegistration:
		id, v, _ := store.ParseRegistrationRowID(rowID)
		r, ok := s.regs[regKey{config: id, version: v}]
		if !ok {
			return notFound("provider registration")
		}
		slot = &r.Ciphertext
	}
	if len(*slot) == 0 {
		return notFound("ciphertext")
	}
	if !bytes.Equal(*slot, prev) {
		return store.ErrStale
	}
	*slot = bytes.Clone(next)
	return nil
}
