package store

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every implementation. Callers test them with
// errors.Is; implementations wrap them with context using %w. No error
// message ever contains a secret, token, hash or ciphertext.
var (
	// ErrNotFound: the addressed row does not exist (or is not visible in the
	// requested state).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a uniqueness rule or precondition on current state failed
	// (duplicate id, second non-terminal instance, terminal state, ...).
	ErrConflict = errors.New("store: conflict")
	// ErrConsumed: a one-time value was already used.
	ErrConsumed = errors.New("store: already consumed")
	// ErrExpired: a one-time value exists but has expired.
	ErrExpired = errors.New("store: expired")
	// ErrRevoked: a token exists but was revoked.
	ErrRevoked = errors.New("store: revoked")
	// ErrStale: a version precondition failed (somebody else wrote first).
	ErrStale = errors.New("store: stale version")
	// ErrInvalid: the input was rejected before touching the database
	// (unknown enum, empty id, oversize value). Wrapped by InvalidError.
	ErrInvalid = errors.New("store: invalid input")
	// ErrUnavailable: the database could not be reached or the operation
	// could not complete for infrastructure reasons. Callers fail closed.
	ErrUnavailable = errors.New("store: unavailable")
)

// InvalidError describes which field of an input was rejected. It matches
// ErrInvalid with errors.Is.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("store: invalid %s: %s", e.Field, e.Reason)
}

func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns an *InvalidError for field.
func Invalid(field, reason string) error { return &InvalidError{Field: field, Reason: reason} }
