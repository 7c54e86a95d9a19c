package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
)

// TestControllerReadyz checks docs/pools.md: with leader election, the
// leader's /readyz reports ready only once it has replayed the Services'
// status, and a standby replica reports ready at once. The first replica's
// /readyz is sampled every few milliseconds from its start, and each
// sample is placed against the times its log gives for becoming leader
// and for the replay.
func TestControllerReadyz(t *testing.T) {
	e := newEnv(t)
	e.namespace(t, berthNS, nil)
	e.namespace(t, "rz", nil)
	e.pool(t, "rz", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/26"}})
	// Services with addresses to replay, given by a first controller.
	first := e.startController(t)
	first.waitReady(t)
	for i := range 30 {
		e.service(t, "rz", fmt.Sprintf("s%02d", i))
	}
	for i := range 30 {
		e.waitAllocated(t, "rz", fmt.Sprintf("s%02d", i), 1)
	}
	first.stop(syscall.SIGTERM)

	args := []string{"--leader-elect", "--leader-election-namespace=" + berthNS,
		"--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=250ms"}
	a := e.startController(t, args...)
	samples := sampleReadyz(t, a.metrics, func() bool { return a.logged("Rebuilt allocations") }, 30*time.Second)
	led := logTime(t, a.proc, "Became leader")
	rebuilt := logTime(t, a.proc, "Rebuilt allocations")
	var notReady int
	for _, s := range samples {
		// An answer was made between the request's start and its end.
		switch {
		case s.start.Before(led) || s.start.After(rebuilt.Add(time.Second)):
		case s.ok && s.at.Before(rebuilt):
			t.Errorf("the leader answered ready between %s and %s, before it finished replaying (led at %s, replayed at %s)",
				s.start.Format(stamp), s.at.Format(stamp), led.Format(stamp), rebuilt.Format(stamp))
		case !s.ok && strings.Contains(s.body, "rebuilding"):
			notReady++
		}
	}
	if notReady == 0 {
		t.Errorf("no sample saw the leader not ready while replaying (led at %s, replayed at %s, %d samples): the check saw nothing", led.Format(stamp), rebuilt.Format(stamp), len(samples))
	}
	a.waitReady(t)
	t.Logf("MEASURED: the leader was not ready for %v between becoming leader and the end of its replay (%d samples said so)", rebuilt.Sub(led).Round(time.Millisecond), notReady)

	// A standby is ready at once, without leading or replaying.
	b := e.startController(t, args...)
	start := time.Now()
	b.waitReady(t)
	t.Logf("MEASURED: the standby answered ready %v after its start", time.Since(start).Round(time.Millisecond))
	holdsFor(t, 2*time.Second, "the standby stays ready without leading", func() error {
		if b.logged("Became leader") || b.logged("Rebuilt allocations") {
			return fmt.Errorf("the standby led or replayed while the leader runs:\n%s", b.tail(10))
		}
		return nil
	})
}

const stamp = "15:04:05.000000"

type readyzSample struct {
	// start and at are when the request was sent and the answer came.
	start, at time.Time
	ok        bool
	body      string
}

// sampleReadyz polls addr's /readyz every 2 ms until done, plus a second,
// and returns every answer with the time it came.
func sampleReadyz(t *testing.T, addr string, done func() bool, within time.Duration) []readyzSample {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	var out []readyzSample
	deadline := time.Now().Add(within)
	var doneAt time.Time
	for time.Now().Before(deadline) && (doneAt.IsZero() || time.Since(doneAt) < time.Second) {
		if doneAt.IsZero() && done() {
			doneAt = time.Now()
		}
		start := time.Now()
		resp, err := c.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			out = append(out, readyzSample{start: start, at: time.Now(), ok: resp.StatusCode == http.StatusOK, body: string(b)})
		}
		time.Sleep(2 * time.Millisecond)
	}
	if doneAt.IsZero() {
		t.Fatalf("not done within %v", within)
	}
	return out
}

var klogTime = regexp.MustCompile(`^[IWEF]\d{4} (\d\d:\d\d:\d\d\.\d{6})`)

// logTime returns the time klog gives for the first line containing substr.
func logTime(t *testing.T, p *proc, substr string) time.Time {
	t.Helper()
	p.logMu.Lock()
	defer p.logMu.Unlock()
	for _, l := range p.log {
		if !strings.Contains(l, substr) {
			continue
		}
		m := klogTime.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("no time in %q", l)
		}
		now := time.Now()
		ts, err := time.ParseInLocation("2006-01-02 "+stamp, now.Format("2006-01-02 ")+m[1], time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	t.Fatalf("%s never logged %q", p.name, substr)
	return time.Time{}
}
