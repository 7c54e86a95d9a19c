package bgp

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// logAdapter is GoBGP's logger for one peer's instance. It forwards to logr
// (GoBGP's Info at V(1), Debug at V(4), Warn as Info, Error, Fatal and
// Panic as Error: nothing here exits or panics), keeps the peer's password
// out of every message, and remembers the last problem GoBGP reported, for
// PeerStatus.LastError.
type logAdapter struct {
	log      logr.Logger
	password string

	mu      sync.Mutex
	lastErr string
}

var _ gobgplog.Logger = (*logAdapter)(nil)

func newLogAdapter(l logr.Logger, password string) *logAdapter {
	return &logAdapter{log: l, password: password}
}

// lastError returns the last problem seen.
func (a *logAdapter) lastError() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastErr
}

// Panic implements gobgplog.Logger; it logs an error and does not panic.
func (a *logAdapter) Panic(msg string, f gobgplog.Fields) { a.error(msg, f) }

// Fatal implements gobgplog.Logger; it logs an error and does not exit.
func (a *logAdapter) Fatal(msg string, f gobgplog.Fields) { a.error(msg, f) }

// Error implements gobgplog.Logger.
func (a *logAdapter) Error(msg string, f gobgplog.Fields) { a.error(msg, f) }

// Warn implements gobgplog.Logger.
func (a *logAdapter) Warn(msg string, f gobgplog.Fields) {
	kv := a.keysAndValues(f)
	a.remember(msg, kv)
	a.log.Info(a.redact(msg), kv...)
}

// Info implements gobgplog.Logger.
func (a *logAdapter) Info(msg string, f gobgplog.Fields) {
	if msg == "Peer Down" {
		a.remember(msg, a.keysAndValues(f))
	}
	if l := a.log.V(1); l.Enabled() {
		l.Info(a.redact(msg), a.keysAndValues(f)...)
	}
}

// Debug implements gobgplog.Logger. GoBGP reports failed connections only
// at debug level, so those are remembered whatever logr's verbosity.
func (a *logAdapter) Debug(msg string, f gobgplog.Fields) {
	if msg == "failed to connect" {
		a.remember(msg, a.keysAndValues(f))
	}
	if l := a.log.V(4); l.Enabled() {
		l.Info(a.redact(msg), a.keysAndValues(f)...)
	}
}

// SetLevel implements gobgplog.Logger; verbosity is logr's business.
func (a *logAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel implements gobgplog.Logger. It claims debug so that GoBGP
// reports failed connections (see Debug); the debug messages GoBGP guards
// with GetLevel are per-session events, not per-route ones.
func (a *logAdapter) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }

func (a *logAdapter) error(msg string, f gobgplog.Fields) {
	kv := a.keysAndValues(f)
	a.remember(msg, kv)
	a.log.Error(nil, a.redact(msg), kv...)
}

// remember records msg and its fields (except the bookkeeping ones) as the
// last error.
func (a *logAdapter) remember(msg string, kv []any) {
	var b strings.Builder
	b.WriteString(msg)
	for i := 0; i+1 < len(kv); i += 2 {
		switch kv[i] {
		case "Topic", "Key", "State", "_facility":
			continue
		}
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	last := a.redact(b.String())
	a.mu.Lock()
	a.lastErr = last
	a.mu.Unlock()
}

// keysAndValues turns GoBGP's fields into logr's pairs, sorted by key,
// with the password replaced wherever it appears.
func (a *logAdapter) keysAndValues(f gobgplog.Fields) []any {
	kv := make([]any, 0, 2*len(f))
	for _, k := range slices.Sorted(maps.Keys(f)) {
		v := f[k]
		switch v.(type) {
		case bool, int, int32, int64, uint, uint8, uint16, uint32, uint64:
		case string, error, fmt.Stringer:
			v = a.redact(fmt.Sprint(v))
		default:
			v = a.redact(fmt.Sprintf("%+v", v))
		}
		kv = append(kv, k, v)
	}
	return kv
}

func (a *logAdapter) redact(s string) string {
	a.mu.Lock()
	pw := a.password
	a.mu.Unlock()
	if pw == "" {
		return s
	}
	return strings.ReplaceAll(s, pw, "<redacted>")
}

// setPassword changes the secret kept out of logs, when a peer changes.
func (a *logAdapter) setPassword(pw string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.password = pw
}
