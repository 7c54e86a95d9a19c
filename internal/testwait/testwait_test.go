package testwait

import (
	"errors"
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	calls := 0
	Eventually(t, time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("f called %d times, want 3", calls)
	}
}
