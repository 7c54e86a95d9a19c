// Package controller is Berth's Service IP controller: it gives every
// LoadBalancer Service it handles its external addresses from BerthIPPools and
// reports the result on the Service and on the pools.
//
// It is the I/O side of allocation. It watches Services, BerthIPPools and
// Namespaces through informers, turns them into allocator inputs with the
// pure config package, asks the allocator, and writes the outcome to the
// status subresources by server-side apply, only when something changed.
// On start (and on every gain of leadership) it rebuilds the allocator's
// state from the Services' status, oldest first, before handling any change,
// so that a valid address never moves.
//
// LoadBalancer Services it does not handle (berth-ccm's unclassed ones, or
// another implementation's) are foreign: the addresses their status shows
// inside a pool are recorded as held under a separate allocator identity,
// in the same oldest-first replay and then on every change, so that the
// controller never hands them out again. It writes nothing to them but,
// when it stops handling a Service, the removal of the status it wrote.
//
// It must not hold allocation rules of its own (they live in allocator and
// config), must not poll, and must not write a status it has not changed.
package controller
