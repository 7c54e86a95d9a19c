package bgp

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

func TestLogAdapterRedactsAndRemembers(t *testing.T) {
	var lines []string
	l := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{Verbosity: 10})
	a := newLogAdapter(l, "s3cret")
	type conf struct{ AuthPassword string }
	a.Info("Add a peer", gobgplog.Fields{"Topic": "Peer", "Data": conf{AuthPassword: "s3cret"}})
	a.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": "198.18.0.1", "Error": errors.New("dial tcp: i/o timeout")})
	a.Fatal("boom s3cret", nil) // must neither exit nor leak
	for _, line := range lines {
		if strings.Contains(line, "s3cret") {
			t.Errorf("password logged: %s", line)
		}
	}
	if len(lines) != 3 {
		t.Errorf("got %d lines, want 3: %q", len(lines), lines)
	}
	if got := a.lastError(); got != "boom <redacted>" {
		t.Errorf("lastError = %q", got)
	}
	a.Warn("received notification", gobgplog.Fields{"Topic": "Peer", "Code": uint8(6), "Subcode": uint8(2)})
	if got, want := a.lastError(), "received notification Code=6 Subcode=2"; got != want {
		t.Errorf("lastError = %q, want %q", got, want)
	}
}
