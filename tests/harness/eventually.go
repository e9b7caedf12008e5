package harness

import (
	"fmt"
	"testing"
	"time"
)

const pollInterval = 20 * time.Millisecond

// Eventually polls cond every 20ms until it reports ok, and fails the test with
// cond's last explanation if deadline passes first.
func Eventually(t testing.TB, deadline time.Duration, cond func() (ok bool, why string)) {
	t.Helper()
	if err := poll(deadline, cond); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

func poll(deadline time.Duration, cond func() (bool, string)) error {
	end := time.Now().Add(deadline)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("condition not met within %v: %s", deadline, why)
		}
		time.Sleep(pollInterval)
	}
}
