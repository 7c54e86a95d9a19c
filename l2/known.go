package l2

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// A speaker learns the known membership it counts its quorum against from
// memberlist, which tells it of a node only while some member thinks that
// node alive: a speaker that restarts while the network is split learns
// only its own side, and with that smaller count its side could hold
// leases while the other side, which knows every node, holds them too
// (TestLivenessRestartDuringSplit). So every memberlist state exchange
// (at every join, and every PushPullInterval) also carries the sender's
// known membership, and the receiver learns the nodes it did not know:
// the known membership of a node that met any other is at least that
// node's. Nodes forgotten on purpose (Forget: their Node was deleted) are
// not learned back from a node that has not forgotten them yet.

// knownMagic starts a known-membership message, followed by its version
// and the names, each ended by a newline (no node name contains one).
const knownMagic = "bkm"

const knownVersion = 1

// encodeKnown returns the message naming the sorted nodes.
func encodeKnown(names []string) []byte {
	var b bytes.Buffer
	b.WriteString(knownMagic)
	b.WriteByte(knownVersion)
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// decodeKnown parses a message of encodeKnown. An empty message (a
// speaker of a release before this one sends no state) names no one.
func decodeKnown(b []byte) ([]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < len(knownMagic)+1 || string(b[:len(knownMagic)]) != knownMagic {
		return nil, errors.New("not a known-membership message")
	}
	if v := b[len(knownMagic)]; v != knownVersion {
		return nil, fmt.Errorf("known-membership message of version %d, want %d", v, knownVersion)
	}
	rest := b[len(knownMagic)+1:]
	if len(rest) > 0 && rest[len(rest)-1] != '\n' {
		return nil, errors.New("known-membership message cut short")
	}
	var names []string
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i == 0 {
			return nil, errors.New("known-membership message names an empty node")
		}
		names = append(names, string(rest[:i]))
		rest = rest[i+1:]
	}
	return names, nil
}

// learn adds to the known membership the nodes that another member knows
// (see encodeKnown), except those this node forgot on purpose, and reports
// whether it added any. Unlike join, it is no contact with anyone: a node
// learned this way is not alive before its heartbeats say so.
func (l *liveness) learn(now time.Time, names []string) bool {
	added := false
	for _, n := range names {
		if n == l.self || l.known[n] || l.forgotten[n] {
			continue
		}
		l.add(n)
		added = true
	}
	if added {
		l.recompute(now)
	}
	return added
}
