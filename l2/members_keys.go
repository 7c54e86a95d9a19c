package l2

import (
	"bytes"
	"fmt"
	"slices"
)

// checkKeys validates the sending key and the other accepted keys.
func checkKeys(primary []byte, others [][]byte) error {
	for i, k := range append([][]byte{primary}, others...) {
		switch len(k) {
		case 16, 24, 32:
		default:
			which := "secret key"
			if i > 0 {
				which = fmt.Sprintf("other key %d", i)
			}
			return fmt.Errorf("l2: %s must be 16, 24 or 32 bytes, got %d", which, len(k))
		}
	}
	return nil
}

// SetKeys changes the keys at run time, for a rotation without restarts:
// messages are sent with primary from now on, and accepted when sent with
// primary or any of others; every other key is forgotten. Rotating without
// losing the membership takes three steps, each seen by every node before
// the next: add the new key to others, make it primary (with the old one
// in others), drop the old one.
func (m *Members) SetKeys(primary []byte, others [][]byte) error {
	if err := checkKeys(primary, others); err != nil {
		return err
	}
	want := append([][]byte{primary}, others...)
	for _, k := range want {
		if err := m.keyring.AddKey(k); err != nil {
			return fmt.Errorf("l2: add key: %w", err)
		}
	}
	if err := m.keyring.UseKey(primary); err != nil {
		return fmt.Errorf("l2: use key: %w", err)
	}
	for _, k := range m.keyring.GetKeys() {
		if !slices.ContainsFunc(want, func(w []byte) bool { return bytes.Equal(w, k) }) {
			if err := m.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("l2: remove key: %w", err)
			}
		}
	}
	return nil
}
