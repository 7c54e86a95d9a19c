package frr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
)

// daemons are the processes of a router (FRR's or BIRD's) in its host, with
// their output and logs in dir.
type daemons struct {
	host *netlab.Host
	dir  string
	// logs are the files in dir that Logs shows.
	logs  []string
	procs []daemon
}

// newDaemons adds host name to lab and makes a directory for its daemons
// (berth-<kind>-*), where logs are the files Logs shows.
func newDaemons(lab *netlab.Lab, name, kind string, logs ...string) (daemons, error) {
	h, err := lab.CreateHost(name)
	if err != nil {
		return daemons{}, err
	}
	return daemonsOn(h, kind, logs...)
}

// daemonsOn is newDaemons in a host that exists already.
func daemonsOn(h *netlab.Host, kind string, logs ...string) (daemons, error) {
	dir, err := os.MkdirTemp("", "berth-"+kind+"-")
	if err != nil {
		return daemons{}, err
	}
	return daemons{host: h, dir: dir, logs: logs}, nil
}

type daemon struct {
	// program is the daemon's name (bgpd): cmd runs it through ip netns
	// exec, so cmd.Path names ip.
	program string
	cmd     *exec.Cmd
	out     *os.File
	// done: terminated and waited for already.
	done bool
}

// start starts argv in the host, its output in dir/<program>.out, until
// Close.
func (d *daemons) start(argv []string) error {
	cmd := d.host.Command(context.Background(), argv...)
	out, err := os.Create(filepath.Join(d.dir, filepath.Base(argv[0])+".out"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	d.procs = append(d.procs, daemon{program: filepath.Base(argv[0]), cmd: cmd, out: out})
	return nil
}

// terminate ends the daemon program with SIGTERM and waits up to wait for
// it to exit, then kills it. Close afterwards leaves it be.
func (d *daemons) terminate(program string, wait time.Duration) {
	for i, p := range d.procs {
		if p.program != program || p.done {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(wait):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		d.procs[i].done = true
	}
}

// Close kills the router's daemons, last started first, and removes its
// directory. The router's host stays until its lab is closed.
func (d *daemons) Close() error {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		if !p.done {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		_ = p.out.Close()
	}
	d.procs = nil
	if d.dir == "" {
		return nil
	}
	if err := os.RemoveAll(d.dir); err != nil {
		return fmt.Errorf("frr: %w", err)
	}
	return nil
}

// Logs returns the ends of the daemons' logs, for failures.
func (d *daemons) Logs() string {
	var b strings.Builder
	for _, f := range d.logs {
		if data, err := os.ReadFile(filepath.Join(d.dir, f)); err == nil && len(data) > 0 {
			fmt.Fprintf(&b, "%s %s:\n%s\n", d.host.Name, f, tail(string(data), 3000))
		}
	}
	return b.String()
}

// closeWith registers Close as tb's cleanup, logging the daemons' logs
// first if tb failed.
func (d *daemons) closeWith(tb testing.TB, name string) {
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("%s:\n%s", name, d.Logs())
		}
		if err := d.Close(); err != nil {
			tb.Error(err)
		}
	})
}

// waitFile waits until path exists, at most d.
func waitFile(ctx context.Context, path string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not appear within %v: %w", path, d, errors.Join(ctx.Err(), context.Cause(ctx)))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
