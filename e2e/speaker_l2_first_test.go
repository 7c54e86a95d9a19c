package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// TestSpeakerL2FirstRecord starts three real speakers with the defaults
// (voters, the record and shrinking on) in a cluster that has no
// membership record yet, as a fresh install does, sampling the record and
// every started speaker's quorate metric every 20 ms: no speaker holds a
// lease before a record exists, the first record (revision 1) names the
// voters at once, without a joint step, and every speaker holds its lease
// soon after.
func TestSpeakerL2FirstRecord(t *testing.T) {
	l := newL2Lab(t, 3)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	var (
		mu      sync.Mutex
		started []*speakerProc
		first   l2.MemberRecord
		firstAt time.Time
		early   string
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			rec, err := l.membersRecord(t)
			mu.Lock()
			procs := started
			mu.Unlock()
			if err == nil && rec.Rev > 0 {
				mu.Lock()
				if firstAt.IsZero() {
					first, firstAt = rec, time.Now()
				}
				mu.Unlock()
				continue
			}
			for _, p := range procs {
				// The record read above came first: a speaker quorate now
				// held its lease while none existed, or one was written
				// meanwhile; read it again to tell.
				if p.gauge("berth_speaker_l2_quorate") == "1" {
					if again, err := l.membersRecord(t); err != nil || again.Rev == 0 {
						mu.Lock()
						if early == "" {
							early = fmt.Sprintf("%s quorate without a record", p.node.name)
						}
						mu.Unlock()
					}
				}
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	})
	start := time.Now()
	for _, nd := range l.nodes {
		l.startL2Speaker(t, t, nd)
		mu.Lock()
		started = append(started, nd.speaker)
		mu.Unlock()
	}
	all := l.waitMembers(t, len(l.nodes))
	allAt := time.Now()
	close(stop)
	<-done
	if early != "" {
		t.Errorf("a lease before the first record: %s", early)
	}
	if first.Rev != 1 || first.Joint || len(first.Voters) == 0 {
		t.Errorf("first record %+v, want revision 1 naming the voters, not joint", first)
	}
	t.Logf("MEASURED: 3 speakers started from no record: first record %+v %v after the first start, every speaker quorate after %v (%v after the last start)",
		first, firstAt.Sub(start).Round(time.Millisecond), allAt.Sub(start).Round(time.Millisecond), all.Round(time.Millisecond))
}
