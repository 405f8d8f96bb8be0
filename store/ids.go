package store

import "github.com/google/uuid"

// NewID returns a new random (v4) UUID string for a row id.
func NewID() string { return uuid.NewString() }

// ValidID reports whether s is a canonical UUID string.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}
