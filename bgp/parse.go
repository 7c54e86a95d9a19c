package bgp

import (
	"fmt"
	"strconv"
	"strings"
)

// Well-known communities (RFC 1997, RFC 3765).
const (
	CommunityNoExport          uint32 = 0xFFFFFF01
	CommunityNoAdvertise       uint32 = 0xFFFFFF02
	CommunityNoExportSubconfed uint32 = 0xFFFFFF03
	CommunityNoPeer            uint32 = 0xFFFFFF04
)

// wellKnown maps the names ParseCommunity accepts to their values.
func wellKnown(name string) (uint32, bool) {
	switch strings.ToLower(name) {
	case "no-export":
		return CommunityNoExport, true
	case "no-advertise":
		return CommunityNoAdvertise, true
	case "no-export-subconfed", "local-as":
		return CommunityNoExportSubconfed, true
	case "no-peer":
		return CommunityNoPeer, true
	}
	return 0, false
}

// ParseCommunity parses a standard community written as "ASN:value" (each
// 0-65535) or as a well-known name: no-export, no-advertise,
// no-export-subconfed (alias local-as), no-peer.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnown(s); ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("parse community %q: want ASN:value or a well-known name", s)
	}
	a, err := strconv.ParseUint(hi, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("parse community %q: ASN: %w", s, err)
	}
	v, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("parse community %q: value: %w", s, err)
	}
	return uint32(a)<<16 | uint32(v), nil
}

// FormatCommunity is the inverse of ParseCommunity, for logs and status.
func FormatCommunity(c uint32) string {
	switch c {
	case CommunityNoExport:
		return "no-export"
	case CommunityNoAdvertise:
		return "no-advertise"
	case CommunityNoExportSubconfed:
		return "no-export-subconfed"
	case CommunityNoPeer:
		return "no-peer"
	}
	return fmt.Sprintf("%d:%d", c>>16, c&0xFFFF)
}

// ParseLargeCommunity parses a large community written as
// "global:local1:local2", each a 32-bit unsigned decimal.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("parse large community %q: want global:local1:local2", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("parse large community %q: part %d: %w", s, i+1, err)
		}
		v[i] = uint32(n)
	}
	return LargeCommunity{Global: v[0], Local1: v[1], Local2: v[2]}, nil
}

// String formats c as ParseLargeCommunity reads it.
func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
}
