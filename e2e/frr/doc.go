// Package frr runs real BGP routers, FRR (zebra and bgpd) or BIRD 2, in a
// netlab host for end-to-end tests, and reads back what they learnt: the
// BGP table, the neighbors' state and the kernel routes they installed.
//
// Start and StartBIRD are for tests: they fail the test they are given on
// any error and kill the daemons in its cleanup. NewRouter and NewBIRD
// return errors and leave the daemons to the caller's Close, for the demo.
// Either way netlab removes the namespace. It starts root-only daemons: it
// must not be imported by Berth's controller, speaker or berth-ccm.
package frr
