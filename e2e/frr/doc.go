// Package frr runs real BGP routers, FRR (zebra and bgpd) or BIRD 2, in a
// netlab host for end-to-end tests, and reads back what they learnt: the
// BGP table, the neighbors' state and the kernel routes they installed.
//
// It must not be imported outside tests: it starts root-only daemons and
// fails the test it is given on any error. Every daemon it starts is killed
// in the test's cleanup; netlab removes the namespace.
package frr
