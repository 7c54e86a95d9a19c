package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/l2"
)

// beforeDeltas is the last commit before summary deltas and memberlist
// without compression (session 12): its speakers read heartbeat version 4
// but not deltas, and compress every message.
const beforeDeltas = "9765742"

// speakerAt returns berth-speaker built from commit of this repository
// (extracted with git archive: it needs the repository's history), kept
// in $BERTH_CACHE/bin (default ~/.cache/berth/bin, beside the control
// plane's binaries) so that later runs and fresh clones reuse it.
func speakerAt(t *testing.T, commit string) string {
	t.Helper()
	cache := os.Getenv("BERTH_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "berth")
	}
	bin := filepath.Join(cache, "bin", "berth-speaker-"+commit)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", root, commit, src))
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("extract commit %s (needs the repository's history): %v\n%s", commit, err, out)
	}
	tmp := filepath.Join(src, "berth-speaker")
	build := exec.Command("go", "build", "-o", tmp, "./cmd/berth-speaker")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build berth-speaker at %s: %v\n%s", commit, err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestSpeakerL2MixedBuilds runs five real speakers with the defaults,
// three of them built from the commit before summary deltas (which
// compresses every message and cannot decode a delta) and two of this
// build, then upgrades the three one at a time, as a DaemonSet's rolling
// update does. Every speaker holds its lease in the mixed cluster and
// after every step; the new speakers send whole summaries to the old ones
// and deltas only to each other, and read every summary they get; an ARP
// probe of the layer-2 addresses never sees two MACs answer one address
// at once (addresses move to an heir and back as owners restart); and
// once all are upgraded, every speaker receives deltas from the four
// others.
func TestSpeakerL2MixedBuilds(t *testing.T) {
	old := speakerAt(t, beforeDeltas)
	l := newL2Lab(t, 5)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "mixed", nil)
	for i, nd := range l.nodes {
		if i < 3 {
			nd.speaker = startSpeakerBin(t, t, l.e, nd, old, "--bgp=false", "--l2", "--memberlist-port=7946")
		} else {
			l.startL2Speaker(t, t, nd)
		}
	}
	t.Logf("MEASURED: 3 speakers of %s and 2 of this build: all quorate after %v", beforeDeltas, l.waitMembers(t, 5))
	var names []string
	for _, nd := range l.nodes {
		names = append(names, nd.name)
	}
	v4s, probe := l.answeredAddrs(t, "mixed", "m", 5, names)
	at := time.Now()

	// counts reads a new speaker's summary counters.
	counts := func(nd *labNode) (sentDelta, sentWhole, readDelta, readWhole, unreadable float64) {
		get := func(metric, form string) float64 { return nd.speaker.number(t, metric, `form="`+form+`"`) }
		return get("berth_speaker_l2_summaries_sent_total", "delta"), get("berth_speaker_l2_summaries_sent_total", "whole"),
			get("berth_speaker_l2_summaries_received_total", "delta"), get("berth_speaker_l2_summaries_received_total", "whole"),
			get("berth_speaker_l2_summaries_received_total", "unreadable")
	}
	// In the mixed cluster, over 5 s: every node votes (5 nodes), so each
	// sends every other a summary 10 times a second; a new speaker sends
	// the three old ones whole summaries and the other new one deltas.
	const window = 5 * time.Second
	var before [5][5]float64
	for i, nd := range l.nodes[3:] {
		before[i][0], before[i][1], before[i][2], before[i][3], before[i][4] = counts(nd)
	}
	time.Sleep(window) // a measurement window, not a wait for a condition
	for i, nd := range l.nodes[3:] {
		sd, sw, rd, rw, un := counts(nd)
		sd, sw, rd, rw, un = sd-before[i][0], sw-before[i][1], rd-before[i][2], rw-before[i][3], un-before[i][4]
		t.Logf("MEASURED: mixed cluster, %s in %v: sent %.0f deltas, %.0f whole; received %.0f deltas, %.0f whole, %.0f unreadable", nd.name, window, sd, sw, rd, rw, un)
		// At most one recipient of deltas: 10 a second.
		if limit := 10*window.Seconds() + 5; sd > limit {
			t.Errorf("%s sent %.0f deltas in %v, more than the other new speaker can take (%.0f)", nd.name, sd, window, limit)
		}
		if sw < 3*10*window.Seconds()*0.8 {
			t.Errorf("%s sent %.0f whole summaries in %v, want about %.0f (to the three old speakers)", nd.name, sw, window, 3*10*window.Seconds())
		}
		if un > 0 {
			t.Errorf("%s could not read %.0f summaries", nd.name, un)
		}
	}

	// The rolling update: one old speaker at a time, stopped as Kubernetes
	// stops a Pod (SIGTERM) and started again from this build.
	for _, nd := range l.nodes[:3] {
		nd.speaker.stop(syscall.SIGTERM)
		l.startL2Speaker(t, t, nd)
		t.Logf("MEASURED: %s upgraded: all quorate after %v", nd.name, l.waitMembers(t, 5))
	}
	for _, a := range v4s {
		probe.waitMAC(t, a, time.Now(), "", hostMAC(t, l.byName(l2.Owner(a, names)).host), settle)
	}
	for i, nd := range l.nodes {
		before[i][0], before[i][1], before[i][2], before[i][3], before[i][4] = counts(nd)
	}
	time.Sleep(window) // a measurement window, not a wait for a condition
	for i, nd := range l.nodes {
		_, _, rd, rw, un := counts(nd)
		rd, rw, un = rd-before[i][2], rw-before[i][3], un-before[i][4]
		t.Logf("MEASURED: all upgraded, %s in %v: received %.0f deltas, %.0f whole, %.0f unreadable", nd.name, window, rd, rw, un)
		// From four voters, 10 a second each, nearly all deltas.
		if want := 4 * 10 * window.Seconds() * 0.8; rd < want || rw > rd/10 || un > 0 {
			t.Errorf("%s received %.0f deltas, %.0f whole and %.0f unreadable summaries in %v, want at least %.0f deltas, nearly all", nd.name, rd, rw, un, window, want)
		}
	}
	time.Sleep(time.Second) // let a late second answer show
	for _, a := range v4s {
		// Addresses move to an heir and back as their owners restart:
		// those moves are a hold-down (0.9 s) apart; two MACs answering
		// at once change places every probe (20 ms).
		if err := probe.interleaved(a, at, 300*time.Millisecond); err != nil {
			t.Error(err)
		}
		// An address of an upgraded node went to its heir and came back.
		owner := l2.Owner(a, names)
		moves := probe.moves(a, at)
		t.Logf("MEASURED: %s (owner %s) changed MACs %d times during the upgrade", a, owner, moves)
		if upgraded := owner == "node1" || owner == "node2" || owner == "node3"; upgraded && moves < 2 {
			t.Errorf("%s, owned by %s, changed MACs %d times, want at least 2 (to its heir and back)", a, owner, moves)
		}
	}
}

func TestInterleaved(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	t0 := time.Unix(1000, 0)
	// replies builds one reply every 20 ms from t0, by the MACs in macs.
	replies := func(macs ...string) []arpReply {
		var out []arpReply
		for i, m := range macs {
			out = append(out, arpReply{at: t0.Add(time.Duration(i) * 20 * time.Millisecond), addr: a, mac: m})
		}
		return out
	}
	repeat := func(m string, n int) []string { return slices.Repeat([]string{m}, n) }
	tests := []struct {
		name string
		macs []string
		want bool
	}{
		{name: "one MAC", macs: repeat("a", 10)},
		{name: "a clean move", macs: append(repeat("a", 10), repeat("b", 10)...)},
		{name: "a move and back a second later", macs: slices.Concat(repeat("a", 10), repeat("b", 50), repeat("a", 10))},
		{name: "both answer every probe", macs: []string{"a", "b", "a", "b", "a", "b"}, want: true},
		{name: "both answer one probe during a move", macs: slices.Concat(repeat("a", 5), []string{"b", "a"}, repeat("b", 5)), want: true},
		{name: "back within 300 ms", macs: slices.Concat(repeat("a", 5), repeat("b", 10), repeat("a", 5)), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &arpProbe{seen: replies(tc.macs...)}
			if err := p.interleaved(a, t0, 300*time.Millisecond); (err != nil) != tc.want {
				t.Errorf("interleaved = %v, want an error: %v", err, tc.want)
			}
		})
	}
}
