package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSpeakerL2KeysNotApplied checks docs/layer2.md: a memberlist Secret
// that goes missing, then comes back with a key of the wrong length,
// changes nothing (the speakers keep the key they share, the membership
// stays whole and quorate) and each speaker records one L2KeysNotApplied
// Warning Event on its Node per problem.
func TestSpeakerL2KeysNotApplied(t *testing.T) {
	l := newL2Lab(t, 2)
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n)
	}
	l.waitMembers(t, 2)
	secrets := l.e.kube.CoreV1().Secrets(speakerNS)
	// The speakers look at the Secret every 10 s, through a cache of 10 s.
	const within = 45 * time.Second
	for _, step := range []struct {
		name    string
		change  func() error
		problem string
	}{
		{"the Secret is deleted", func() error {
			return secrets.Delete(t.Context(), memberlistSecret, metav1.DeleteOptions{})
		}, "does not exist"},
		{"the Secret comes back with a 5-byte key", func() error {
			l.secret(memberlistSecret, map[string]string{"secretkey": "short"})
			return nil
		}, "is 5 bytes"},
	} {
		if err := step.change(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, n := range l.nodes {
			poll(t, within, fmt.Sprintf("%s: L2KeysNotApplied on Node %s naming %q", step.name, n.name, step.problem), func() error {
				for _, m := range l.e.eventsWithin(t, metav1.NamespaceDefault, n.name, "L2KeysNotApplied", time.Second) {
					if strings.Contains(m, step.problem) {
						return nil
					}
				}
				return fmt.Errorf("no such Event yet")
			})
		}
		// The membership kept its key: whole and quorate all along the
		// next key check.
		holdsFor(t, 12*time.Second, step.name+": the membership stays whole", func() error {
			for _, n := range l.nodes {
				if m, q := n.speaker.gauge("berth_speaker_l2_members"), n.speaker.gauge("berth_speaker_l2_quorate"); m != "2" || q != "1" {
					return fmt.Errorf("%s: members %q, quorate %q", n.name, m, q)
				}
			}
			return nil
		})
	}
}
