package store

import (
	"context"
	"strconv"
	"strings"
)

// EncryptedColumn names one encrypted column by its logical "table.column"
// name (DESIGN §9). The two halves and the row id are exactly what
// domain/secrets.AAD binds each ciphertext to:
//
//	secrets.AAD(col.Table(), col.Column(), rowID)
//
// so writers, readers and the re-encryption job agree on associated data.
type EncryptedColumn string

// The encrypted columns and their row ids.
const (
	// Config.StaticHeaders; row id = config id.
	ColConfigStaticHeaders EncryptedColumn = "configs.static_headers"
	// Config.Provider.ClientCredentials; row id = config id.
	ColConfigProviderClientCredentials EncryptedColumn = "configs.provider_client_credentials"
	// Grant.AccessToken; row id = instance id.
	ColGrantAccessToken EncryptedColumn = "grants.access_token"
	// Grant.RefreshToken; row id = instance id.
	ColGrantRefreshToken EncryptedColumn = "grants.refresh_token"
	// ProviderRegistration.Ciphertext; row id = RegistrationRowID(config
	// id, config version).
	ColProviderRegistration EncryptedColumn = "provider_registrations.ciphertext"
)

// EncryptedColumns lists the columns a re-encryption job rewrites. Pending
// provider state is not among them: it lives at most 30 minutes, so keeping
// the previous key in the ring that long after a rotation covers it.
var EncryptedColumns = []EncryptedColumn{
	ColConfigStaticHeaders,
	ColConfigProviderClientCredentials,
	ColGrantAccessToken,
	ColGrantRefreshToken,
	ColProviderRegistration,
}

// Table is the part before the dot.
func (c EncryptedColumn) Table() string { t, _, _ := strings.Cut(string(c), "."); return t }

// Column is the part after the dot.
func (c EncryptedColumn) Column() string { _, col, _ := strings.Cut(string(c), "."); return col }

// Known reports whether c is one of EncryptedColumns.
func (c EncryptedColumn) Known() bool {
	for _, k := range EncryptedColumns {
		if c == k {
			return true
		}
	}
	return false
}

// RegistrationRowID is the row id of a provider registration for AAD and
// re-encryption: "<config id>/<config version>".
func RegistrationRowID(configID string, version int64) string {
	return configID + "/" + strconv.FormatInt(version, 10)
}

// ParseRegistrationRowID is the inverse of RegistrationRowID.
func ParseRegistrationRowID(rowID string) (configID string, version int64, ok bool) {
	id, v, found := strings.Cut(rowID, "/")
	if !found || !ValidID(id) {
		return "", 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != v {
		return "", 0, false
	}
	return id, n, true
}

// CiphertextRow is one stored ciphertext and its row id.
type CiphertextRow struct {
	RowID string
	Value []byte
}

// MaxCiphertextPage bounds ListCiphertexts' limit.
const MaxCiphertextPage = 1000

// ReencryptStore lets a key-rotation job rewrite ciphertext under the
// newest key (DESIGN §9 "re-encryption command"). It is not part of Store:
// callers type-assert, and both implementations provide it.
type ReencryptStore interface {
	// ListCiphertexts pages through the non-null values of col in row id
	// order: rows with a row id greater than after ("" = from the start),
	// at most limit (1..MaxCiphertextPage). Terminal or deleted rows are
	// included as long as they still hold a value.
	ListCiphertexts(ctx context.Context, col EncryptedColumn, after string, limit int) ([]CiphertextRow, error)
	// ReplaceCiphertext sets col of rowID to next only if it still holds
	// prev (compare-and-swap, so a concurrent writer always wins):
	// ErrStale if the value changed, ErrNotFound if the row or the value is
	// gone. It is not a material change: no version moves and no audit
	// event is written — the plaintext is the same. (Watchers may see a
	// change for a config; re-reading an unchanged config is harmless.)
	ReplaceCiphertext(ctx context.Context, col EncryptedColumn, rowID string, prev, next []byte) error
}

// ValidateReplaceCiphertext checks ReplaceCiphertext's input (shared by the
// implementations).
func ValidateReplaceCiphertext(col EncryptedColumn, rowID string, prev, next []byte) error {
	if err := validateCiphertextRow(col, rowID); err != nil {
		return err
	}
	if len(prev) == 0 || len(next) == 0 {
		return Invalid("ciphertext", "must not be empty")
	}
	if len(prev) > MaxCiphertextLen || len(next) > MaxCiphertextLen {
		return Invalid("ciphertext", "too large")
	}
	return nil
}

// ValidateListCiphertexts checks ListCiphertexts' input.
func ValidateListCiphertexts(col EncryptedColumn, after string, limit int) error {
	if !col.Known() {
		return Invalid("column", "unknown encrypted column")
	}
	if limit < 1 || limit > MaxCiphertextPage {
		return Invalid("limit", "must be 1-1000")
	}
	if after != "" {
		return validateCiphertextRow(col, after)
	}
	return nil
}

func validateCiphertextRow(col EncryptedColumn, rowID string) error {
	if !col.Known() {
		return Invalid("column", "unknown encrypted column")
	}
	if col == ColProviderRegistration {
		if _, _, ok := ParseRegistrationRowID(rowID); !ok {
			return Invalid("row_id", "must be <config id>/<version>")
		}
		return nil
	}
	if !ValidID(rowID) {
		return Invalid("row_id", "must be a UUID")
	}
	return nil
}
