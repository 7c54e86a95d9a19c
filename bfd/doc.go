// Package bfd is Bidirectional Forwarding Detection (RFC 5880) in
// asynchronous mode, over UDP: single-hop (RFC 5881, port 3784, TTL 255 on
// both ends) and multihop (RFC 5883, port 4784). The BGP speaker runs a
// session next to each BGP session whose peer asks for one, and takes the
// BGP session down as soon as BFD declares the path down, instead of
// waiting for the BGP hold time.
//
// The protocol is a pure state machine (Machine): it takes the time and
// the packets received, and returns the packets to send and the state
// changes, so that every transition of RFC 5880 §6.8 is tested with a fake
// clock. Server runs the sessions' Machines, their timers from one
// scheduler goroutine and their received packets on the transport's
// reading goroutine, over UDP (udp.go) or any other Transport.
//
// # What it does and does not do
//
// It implements the asynchronous mode with the slow start of §6.8.3
// (packets every second at least until the session is Up), timer
// negotiation with Poll and Final (§6.5), the detection multiplier, and
// AdministrativelyDown on session removal, so that the neighbor does not
// mistake a deconfigured session for a failure. It answers a neighbor in
// Demand mode by ceasing periodic transmission, but never asks for Demand
// mode itself. It does not implement the Echo function (it advertises a
// Required Min Echo RX Interval of zero, which tells the neighbor not to
// send echoes), and supports no authentication: packets with the A bit
// are discarded (§6.8.6), as the RFC requires of a session configured
// without authentication.
//
// It must not know about BGP or Kubernetes: it reports state changes to a
// callback and lets the caller decide what they mean.
package bfd
