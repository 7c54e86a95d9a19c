package demo

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-logr/logr"
)

// lifecycle lets the demo use e2e/netlab and e2e/frr, which report failures
// and register their cleanups through testing.TB. Fatal and Skip panic with
// an abort, which try turns into an error; cleanups run, last first, in
// close. Methods of testing.TB the two packages do not use are left to the
// nil embedded interface and would panic.
type lifecycle struct {
	testing.TB
	ctx      context.Context
	log      logr.Logger
	cleanups []func()
	failed   bool
}

// abort is what Fatal and Skip panic with.
type abort struct{ msg string }

func newLifecycle(ctx context.Context) *lifecycle {
	return &lifecycle{ctx: ctx, log: logr.FromContextOrDiscard(ctx).WithName("network")}
}

// try runs f and returns the message of a Fatal or Skip inside it as an
// error.
func (l *lifecycle) try(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", a.msg)
		}
	}()
	f()
	return nil
}

// close runs the cleanups, last registered first.
func (l *lifecycle) close() {
	for i := len(l.cleanups) - 1; i >= 0; i-- {
		l.cleanups[i]()
	}
	l.cleanups = nil
}

func (l *lifecycle) Helper()                  {}
func (l *lifecycle) Name() string             { return "berth-demo" }
func (l *lifecycle) Context() context.Context { return l.ctx }
func (l *lifecycle) Cleanup(f func())         { l.cleanups = append(l.cleanups, f) }
func (l *lifecycle) Failed() bool             { return l.failed }
func (l *lifecycle) Log(args ...any)          { l.log.Info(fmt.Sprint(args...)) }
func (l *lifecycle) Logf(f string, args ...any) {
	l.log.Info(fmt.Sprintf(f, args...))
}
func (l *lifecycle) Error(args ...any) { l.failed = true; l.log.Error(nil, fmt.Sprint(args...)) }
func (l *lifecycle) Errorf(f string, args ...any) {
	l.failed = true
	l.log.Error(nil, fmt.Sprintf(f, args...))
}
func (l *lifecycle) Fatal(args ...any) { l.failed = true; panic(abort{fmt.Sprint(args...)}) }
func (l *lifecycle) Fatalf(f string, args ...any) {
	l.failed = true
	panic(abort{fmt.Sprintf(f, args...)})
}
func (l *lifecycle) FailNow()                 { l.failed = true; panic(abort{"failed"}) }
func (l *lifecycle) Skip(args ...any)         { panic(abort{fmt.Sprint(args...)}) }
func (l *lifecycle) Skipf(f string, a ...any) { panic(abort{fmt.Sprintf(f, a...)}) }
func (l *lifecycle) SkipNow()                 { panic(abort{"skipped"}) }
