package testwait

import (
	"testing"
	"time"
)

// Eventually calls f every 50 ms until it returns nil, and fails tb with
// f's last error if d passes first.
func Eventually(tb testing.TB, d time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
