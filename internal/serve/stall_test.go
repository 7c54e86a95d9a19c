package serve

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStallHealthz serves a Stall's Check on /healthz through the real
// server: ok while idle or within the limit, 500 naming the loop once an
// iteration overruns, ok again once it ends.
func TestStallHealthz(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewStall("sync", time.Minute)
	s.now = func() time.Time { return now }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	stop, err := Serve(context.Background(), Config{Addr: addr, Registry: prometheus.NewRegistry(),
		Healthy: func(context.Context) error { return s.Check() }})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var end func()
	steps := []struct {
		name   string
		do     func()
		code   int
		substr string
	}{
		{"idle", func() {}, 200, "ok"},
		{"busy within the limit", func() { end = s.Begin(); now = now.Add(59 * time.Second) }, 200, "ok"},
		{"a second worker starts", func() { s.Begin(); now = now.Add(2 * time.Second) }, 500, "the sync loop is stuck: one iteration has run for 1m1s"},
		{"the first one ends, the second is young", func() { end() }, 200, "ok"},
	}
	for _, st := range steps {
		st.do()
		code, body := get()
		if code != st.code || !strings.Contains(body, st.substr) {
			t.Errorf("%s: /healthz = %d %q, want %d with %q", st.name, code, body, st.code, st.substr)
		}
	}
}
