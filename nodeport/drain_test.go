package nodeport

import (
	"bytes"
	"net/netip"
	"testing"
)

// TestDrainElement checks that drain set elements round-trip through nft's
// integer spelling (which drops leading zeros) and encode to the address's
// bytes, as the kernel stores a raw-payload key.
func TestDrainElement(t *testing.T) {
	for _, s := range []string{"198.51.100.2", "10.0.0.1", "0.0.0.1", "2001:db8::5", "::ffff:0:1"} {
		a := netip.MustParseAddr(s)
		e := drainElement(a)
		for _, spelled := range []string{e.Key[0], "0x" + trimZeros(e.Key[0][2:])} {
			got, err := parseDrainElement(e.Set, []string{spelled})
			if err != nil || got != a {
				t.Errorf("%s: parse %q = %v, %v", a, spelled, got, err)
			}
		}
		enc, err := encodeElement(e, true)
		if err != nil || !bytes.Equal(enc.Key, a.AsSlice()) || enc.Val != nil {
			t.Errorf("%s: encoded %x : %x, %v", a, enc.Key, enc.Val, err)
		}
	}
	if _, err := parseDrainElement(drainSet4, []string{"0x1c6336402"}); err == nil {
		t.Error("an IPv4 drain element of 33 bits parsed")
	}
}

func trimZeros(h string) string {
	for len(h) > 1 && h[0] == '0' {
		h = h[1:]
	}
	return h
}
