// Package ledger is the one record of who holds which pool address, shared
// by berth-controller and berth-ccm's pools backend so that both keep the
// same promises with the same code.
//
// A Ledger wraps the allocator with what the allocator cannot know by
// itself: which Services this implementation serves (the others' addresses
// are held as foreign holdings and never handed out), the replay that
// rebuilds the record from the Services' status after a restart (every
// valid address is restored before any Service is given a new one), the
// addresses kept for a Service whose request became invalid (rebuilt from
// its status, not from memory), and the Services waiting for an address
// (served oldest first the moment one is freed).
//
// It reads Services and Namespaces from listers and writes nothing to the
// API server: the caller writes status and records Events from the
// Outcome it gets back.
package ledger
