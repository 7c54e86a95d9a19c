package ledger

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/config"
)

// waitingSet holds the served Services that lack an address they want, by
// key, with their creation time: when an address is freed, the oldest of
// them is offered it first.
type waitingSet map[string]time.Time

func (w waitingSet) add(svc *corev1.Service) { w[config.Key(svc)] = svc.CreationTimestamp.Time }

func (w waitingSet) remove(key string) { delete(w, key) }

// oldestFirst lists the keys by creation time, then key.
func (w waitingSet) oldestFirst() []string {
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := w[a].Compare(w[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}

// OlderFirst orders Services by creation time, then namespace/name: the
// order of every replay, so that of two Services claiming one address the
// older keeps it.
func OlderFirst(a, b *corev1.Service) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return strings.Compare(config.Key(a), config.Key(b))
}
