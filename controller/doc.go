// Package controller is Berth's Service IP controller: it gives every
// LoadBalancer Service it handles its external addresses from IPPools and
// reports the result on the Service and on the pools.
//
// It is the I/O side of allocation. It watches Services, IPPools and
// Namespaces through informers, turns them into allocator inputs with the
// pure config package, asks the allocator, and writes the outcome to the
// status subresources by server-side apply, only when something changed.
// On start (and on every gain of leadership) it rebuilds the allocator's
// state from the Services' status, oldest first, before handling any change,
// so that a valid address never moves.
//
// It must not hold allocation rules of its own (they live in allocator and
// config), must not poll, and must not write a status it has not changed.
package controller
