// Package config turns Berth's custom resources and a Service into the
// inputs of the allocator.
//
// It is pure: For takes a snapshot of BerthIPPools and returns a validated Config;
// Config.Request takes a Service and its namespace's labels and returns the
// allocator request, or an error that names what the user must fix. Nothing
// here talks to the API server, keeps state between calls or logs; the
// controller owns all of that, which keeps these rules easy to test with
// large tables.
package config
