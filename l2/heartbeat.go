package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// heartbeat is one message of the speakers' liveness protocol (see
// liveness.go). It travels inside memberlist's authenticated, encrypted
// user messages; the encoding below only has to be compact and safe to
// decode.
type heartbeat struct {
	// From is the sender's node name.
	From string
	// Epoch is the sender's wall-clock start time (Unix nanoseconds): a
	// restarted node is a new, greater epoch, and stamps of different
	// epochs are not comparable. Receivers drop messages of an epoch older
	// than the newest they heard from the sender.
	Epoch uint64
	// Seq numbers the sender's messages within its epoch, from 1; every
	// message (every part of encodeHeartbeats) has its own. Receivers
	// accept each (Epoch, Seq) at most once: see replayWindow.
	Seq uint64
	// Stamp is the sender's clock when it sent the message, nanoseconds
	// since it started. Only the sender interprets it, when it comes back
	// in someone's Heard.
	Stamp uint64
	// Bye says the sender is leaving on purpose: it answers for nothing
	// from now on, and must be considered dead at once.
	Bye bool
	// Quorate says the sender held its lease when it sent the message (it
	// may still be in its hold-down). A node that says it is not quorate
	// answers for nothing, so the others do not wait for it.
	Quorate bool
	// Heard lists, for every node the sender received a heartbeat from
	// recently, the newest one: first-hand evidence only, never relayed.
	Heard []heard
	// Rec is the membership record the sender follows (see
	// membership.go); its echoes in Heard count only towards leases
	// under Rec.Rev or the next revision. Revision 0 (no record) is sent
	// in version 2, which speakers of earlier releases read.
	Rec MemberRecord
	// Reads3 says the sender reads version 3: no record is written
	// while a live node does not.
	Reads3 bool
	// Reads4 says the sender reads version 4: no record with voters is
	// written while a live node does not.
	Reads4 bool
	// WaitFirst (versions 2 and 3) says the sender holds no lease until a
	// first record exists (first_record.go).
	WaitFirst bool
	// Digest (version 4) is the digest of the sender's sorted known
	// membership (see summary.go): a voter sends a node a summary only
	// when the node's own heartbeats announce the same digest.
	Digest uint64
	// Summary (version 4), if not nil, is the sender's report of every
	// node it heard, over its known membership; Heard then holds the
	// recipient's echo only.
	Summary []byte
	// Delta (version 4), if not nil, stands for Summary: the summary as
	// changes to one the sender sent the recipient before
	// (summary_delta.go).
	Delta *summaryDelta
	// ReadsDelta (version 4) says the sender reads a Delta.
	ReadsDelta bool
}

// summaryDelta is a summary of Len entries written as changes to the
// summary that the sender sent the recipient in its heartbeat of stamp
// Base, in the same epoch: the entries at Index take the bytes in B,
// every other entry keeps the base's byte.
type summaryDelta struct {
	Base  uint64
	Len   int
	Index []int
	B     []byte
}

// heard is one entry of heartbeat.Heard.
type heard struct {
	Node  string
	Epoch uint64
	Stamp uint64
	// Age is how long before sending the sender received that heartbeat.
	Age time.Duration
	// Quorate is that heartbeat's Quorate.
	Quorate bool
	// Summarised says that heartbeat carried a summary this node read
	// and keeps: its sender may send deltas against it
	// (summary_delta.go).
	Summarised bool
}

// heartbeatMagic starts every heartbeat; messages without it are not ours.
// The byte after it is the version of the encoding.
const heartbeatMagic = "bhb"

// heartbeatVersion is the newest version this node sends; it reads
// heartbeatVersion and heartbeatVersion2. Version 3 adds the membership
// record and is sent only under a record of revision 1 or more: without
// one, this node sends version 2 (with flagReads3, which version 2
// readers ignore), so that a rolling upgrade from a release that speaks
// version 2 keeps the membership whole. Version 1 (the byte '1', from when
// the magic was "bhb1") had no Seq. A message of another version is
// rejected with a versionError, which Members counts and logs: during a
// rolling upgrade across versions the old and new speakers do not hear
// each other, so the split is visible rather than silent (see
// docs/layer2.md).
const (
	heartbeatVersion  = 3
	heartbeatVersion2 = 2
	// heartbeatVersion4 adds the voters, the digest of the sender's
	// known membership and the summary (voters.go, summary.go); it is
	// sent only under a record with voters, which is written only once
	// every live node says it reads version 4 (flagReads4).
	heartbeatVersion4 = 4
)

// versionError is a heartbeat of a version this node does not speak. From
// is the sender if the message was readable enough to tell.
type versionError struct {
	Version int
	From    string
}

func (e *versionError) Error() string {
	return fmt.Sprintf("heartbeat of version %d from %q, this node speaks versions %d to %d", e.Version, e.From, heartbeatVersion2, heartbeatVersion4)
}

// Limits of the encoding, so that decoding a hostile or corrupt message
// allocates little.
const (
	maxNameLen    = 253 // a DNS subdomain, like a Kubernetes Node name
	maxHeard      = 1024
	maxMessageLen = 1200 // fits memberlist's UDP packets with its overhead
	flagBye       = 1
	flagQuorate   = 2
	// flagReads3 (versions 2 and 3): the sender reads version 3.
	flagReads3 = 4
	// flagJoint (versions 3 and 4): the record is a joint one (NextOut
	// follows).
	flagJoint = 8
	// flagReads4 (versions 2 and 3): the sender reads version 4.
	flagReads4 = 16
	// flagSummary (version 4): a summary follows the digest.
	flagSummary = 32
	// flagWaitFirst (versions 2 and 3): the sender holds no lease until
	// a first record exists; earlier releases ignore it.
	flagWaitFirst = 64
	// flagReadsDelta (version 4, where bit 64 is free): the sender reads
	// summary deltas; earlier releases ignore it.
	flagReadsDelta = 64
	// flagDelta (version 4, with flagSummary): the summary is a delta.
	flagDelta = 128
	// flagSummarised (a Heard entry's flags): heard.Summarised. Earlier
	// releases read only flagQuorate there.
	flagSummarised = 4
)

var errTruncated = errors.New("truncated heartbeat")

// encodeHeartbeats encodes hb in as few messages as fit maxMessageLen each:
// every message repeats the header and carries a part of Heard. Receivers
// merge the parts, so they need not arrive together. The parts are
// numbered hb.Seq, hb.Seq+1, ...: the sender must not use those numbers
// again in this epoch (liveness.encode takes care of it).
func encodeHeartbeats(hb heartbeat) [][]byte {
	var out [][]byte
	header := func() []byte {
		b := make([]byte, 0, maxMessageLen)
		b = append(b, heartbeatMagic...)
		v3, v4 := hb.Rec.Rev > 0, hb.Rec.hasVoters()
		switch {
		case v4:
			b = append(b, heartbeatVersion4)
		case v3:
			b = append(b, heartbeatVersion)
		default:
			b = append(b, heartbeatVersion2)
		}
		var flags byte
		if hb.Bye {
			flags |= flagBye
		}
		if hb.Quorate {
			flags |= flagQuorate
		}
		if hb.Reads3 {
			flags |= flagReads3
		}
		if v3 && hb.Rec.Joint {
			flags |= flagJoint
		}
		if hb.Reads4 && !v4 {
			flags |= flagReads4
		}
		if v4 && (hb.Summary != nil || hb.Delta != nil) {
			flags |= flagSummary
		}
		if v4 && hb.Delta != nil {
			flags |= flagDelta
		}
		if v4 && hb.ReadsDelta {
			flags |= flagReadsDelta
		}
		if hb.WaitFirst && !v4 {
			flags |= flagWaitFirst
		}
		b = append(b, flags)
		b = appendString(b, hb.From)
		b = binary.BigEndian.AppendUint64(b, hb.Epoch)
		b = binary.AppendUvarint(b, hb.Seq+uint64(len(out)))
		b = binary.AppendUvarint(b, hb.Stamp)
		if v3 {
			b = binary.AppendUvarint(b, hb.Rec.Rev)
			b = appendNames(b, hb.Rec.Out)
			if hb.Rec.Joint {
				b = appendNames(b, hb.Rec.NextOut)
			}
		}
		if v4 {
			b = appendNames(b, hb.Rec.Voters)
			if hb.Rec.Joint {
				b = appendNames(b, hb.Rec.NextVoters)
			}
			b = binary.BigEndian.AppendUint64(b, hb.Digest)
			switch {
			case hb.Delta != nil:
				b = appendDelta(b, hb.Delta)
			case hb.Summary != nil:
				b = binary.AppendUvarint(b, uint64(len(hb.Summary)))
				b = append(b, hb.Summary...)
			}
		}
		return b
	}
	rest := hb.Heard
	for first := true; first || len(rest) > 0; first = false {
		b := header()
		var entries []byte
		n := 0
		for _, h := range rest {
			var flags byte
			if h.Quorate {
				flags |= flagQuorate
			}
			if h.Summarised {
				flags |= flagSummarised
			}
			e := append(appendString(nil, h.Node), flags)
			e = binary.BigEndian.AppendUint64(e, h.Epoch)
			e = binary.AppendUvarint(e, h.Stamp)
			e = binary.AppendUvarint(e, uint64(max(h.Age, 0)/time.Microsecond))
			// One entry always goes in, however long: names are
			// bounded, so the message stays well under 64 KiB.
			if n > 0 && len(b)+binary.MaxVarintLen64+len(entries)+len(e) > maxMessageLen {
				break
			}
			entries = append(entries, e...)
			n++
		}
		b = binary.AppendUvarint(b, uint64(n))
		out = append(out, append(b, entries...))
		rest = rest[n:]
	}
	return out
}

func appendNames(b []byte, names []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = appendString(b, n)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// isHeartbeat reports whether b starts like a heartbeat, of any version.
func isHeartbeat(b []byte) bool {
	return len(b) > len(heartbeatMagic) && string(b[:len(heartbeatMagic)]) == heartbeatMagic
}

// decodeHeartbeat parses one message of encodeHeartbeats. A heartbeat of
// another version fails with a *versionError.
func decodeHeartbeat(b []byte) (heartbeat, error) {
	var hb heartbeat
	if !isHeartbeat(b) {
		return hb, errors.New("not a heartbeat")
	}
	d := decoder{b: b[len(heartbeatMagic)+1:]}
	v := int(b[len(heartbeatMagic)])
	if v != heartbeatVersion && v != heartbeatVersion2 && v != heartbeatVersion4 {
		if v == '1' {
			v = 1 // the magic was "bhb1"
		}
		// Versions 1 to 4 start alike: name the sender if possible.
		d.byte()
		return hb, &versionError{Version: v, From: d.string()}
	}
	flags := d.byte()
	hb.Bye, hb.Quorate, hb.Reads3, hb.Reads4 = flags&flagBye != 0, flags&flagQuorate != 0, flags&flagReads3 != 0, flags&flagReads4 != 0
	hb.WaitFirst = v != heartbeatVersion4 && flags&flagWaitFirst != 0
	hb.From = d.string()
	hb.Epoch = d.uint64()
	hb.Seq = d.uvarint()
	hb.Stamp = d.uvarint()
	if v == heartbeatVersion || v == heartbeatVersion4 {
		hb.Reads3 = true
		hb.Rec.Rev = d.uvarint()
		hb.Rec.Out = d.names()
		if flags&flagJoint != 0 {
			hb.Rec.Joint = true
			hb.Rec.NextOut = d.names()
		}
		if d.err == nil && hb.Rec.Rev == 0 {
			return heartbeat{}, errors.New("version 3 heartbeat without a record")
		}
	}
	if v == heartbeatVersion4 {
		hb.Reads4 = true
		hb.Rec.Voters = d.names()
		if hb.Rec.Joint {
			hb.Rec.NextVoters = d.names()
		}
		hb.Digest = d.uint64()
		hb.ReadsDelta = flags&flagReadsDelta != 0
		if flags&flagSummary != 0 && flags&flagDelta != 0 {
			hb.Delta = d.delta()
		} else if flags&flagSummary != 0 {
			n := d.uvarint()
			switch {
			case d.err != nil:
			case n > maxHeard || n > uint64(len(d.b)):
				d.err = fmt.Errorf("summary of %d nodes in %d bytes", n, len(d.b))
			default:
				hb.Summary, d.b = slices.Clone(d.b[:n]), d.b[n:]
			}
		}
		if d.err == nil && !hb.Rec.hasVoters() {
			return heartbeat{}, errors.New("version 4 heartbeat without voters")
		}
	}
	n := d.uvarint()
	if d.err == nil && n > maxHeard {
		return hb, fmt.Errorf("heartbeat lists %d nodes, at most %d", n, maxHeard)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		h := heard{Node: d.string()}
		f := d.byte()
		h.Quorate, h.Summarised = f&flagQuorate != 0, f&flagSummarised != 0
		h.Epoch, h.Stamp = d.uint64(), d.uvarint()
		age := d.uvarint()
		if age > uint64(time.Hour/time.Microsecond) {
			age = uint64(time.Hour / time.Microsecond)
		}
		h.Age = time.Duration(age) * time.Microsecond
		hb.Heard = append(hb.Heard, h)
	}
	switch {
	case d.err != nil:
		return heartbeat{}, d.err
	case len(d.b) != 0:
		return heartbeat{}, fmt.Errorf("%d bytes after the heartbeat", len(d.b))
	case hb.From == "":
		return heartbeat{}, errors.New("heartbeat without a sender")
	case hb.Seq == 0:
		return heartbeat{}, errors.New("heartbeat without a sequence number")
	}
	return hb, nil
}

// decoder reads fields until the first error, which it keeps.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errTruncated
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = errTruncated
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// appendDelta appends d: its base stamp, its length, and the changed
// entries as gaps between indexes (the first from -1) and bytes.
func appendDelta(b []byte, d *summaryDelta) []byte {
	b = binary.AppendUvarint(b, d.Base)
	b = binary.AppendUvarint(b, uint64(d.Len))
	b = binary.AppendUvarint(b, uint64(len(d.Index)))
	prev := -1
	for i, x := range d.Index {
		b = binary.AppendUvarint(b, uint64(x-prev))
		b = append(b, d.B[i])
		prev = x
	}
	return b
}

// delta reads a summaryDelta of at most maxHeard entries, its indexes
// increasing and below its length.
func (d *decoder) delta() *summaryDelta {
	sd := &summaryDelta{Base: d.uvarint()}
	n, count := d.uvarint(), d.uvarint()
	if d.err == nil && (n > maxHeard || count > n || count*2 > uint64(len(d.b))) {
		d.err = fmt.Errorf("summary delta of %d changes to %d nodes in %d bytes", count, n, len(d.b))
	}
	if d.err != nil {
		return nil
	}
	sd.Len = int(n)
	prev := -1
	for i := uint64(0); i < count && d.err == nil; i++ {
		gap := d.uvarint()
		if d.err == nil && (gap == 0 || gap > n) {
			d.err = fmt.Errorf("summary delta index gap %d in %d nodes", gap, n)
		}
		x := prev + int(gap)
		if d.err == nil && x >= sd.Len {
			d.err = fmt.Errorf("summary delta index %d in %d nodes", x, n)
		}
		sd.Index, sd.B = append(sd.Index, x), append(sd.B, d.byte())
		prev = x
	}
	return sd
}

// names reads a list of names, at most maxHeard.
func (d *decoder) names() []string {
	n := d.uvarint()
	if d.err == nil && n > maxHeard {
		d.err = fmt.Errorf("record lists %d nodes, at most %d", n, maxHeard)
	}
	if d.err != nil || n == 0 {
		return nil
	}
	out := make([]string, 0, min(n, 16))
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, d.string())
	}
	return out
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxNameLen {
		d.err = fmt.Errorf("name of %d bytes, at most %d", n, maxNameLen)
		return ""
	}
	if uint64(len(d.b)) < n {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
