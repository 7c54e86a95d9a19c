package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// process is one child of the control plane (etcd or kube-apiserver) whose
// output goes to a log file in the data directory.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; read only after done is closed
}

// startProcess starts path with args, logging to dir/name.log. The process is
// not tied to a context: it lives until stop, or until the test binary dies
// (Pdeathsig), so that a killed test never leaks an API server.
func startProcess(name, path, dir string, args []string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Setpgid keeps a terminal's ^C from reaching the children before the
	// test has a chance to stop them in order; Pdeathsig covers the test
	// binary being killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	started := make(chan error)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits,
		// not the process. Fork from a locked thread that lives until the
		// child is reaped, so a caller's thread ending (a test goroutine
		// that locked its thread for setns, say) cannot kill the child.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes an unexpected exit, with the tail of the log.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited: %w\n--- last lines of %s ---\n%s", p.name, p.err, p.logPath, fileTail(p.logPath, 30))
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit. An
// exit caused by those signals is not an error.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return p.unexpectedExit()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// unexpectedExit returns an error if the process exited by itself with a
// failure before stop was called.
func (p *process) unexpectedExit() error {
	if p.err != nil {
		return p.exitError()
	}
	return nil
}

// Process is a daemon that StartProcess started, for other harnesses (the
// nodes of package cluster) that run more daemons the same way.
type Process struct{ p *process }

// StartProcess starts argv in dir, logging to dir/name.log, with the same
// lifetime rules as the control plane's own processes: it dies with the
// test binary (Pdeathsig) and is not tied to a context.
func StartProcess(dir, name string, argv ...string) (*Process, error) {
	p, err := startProcess(name, argv[0], dir, argv[1:])
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Name is the name given to StartProcess.
func (p *Process) Name() string { return p.p.name }

// Running reports whether the process has not exited. A nil Process is not
// running.
func (p *Process) Running() bool { return p != nil && !p.p.exited() }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the exit. It
// returns an error if the process had already exited with a failure. A nil
// Process is stopped.
func (p *Process) Stop(grace time.Duration) error {
	if p == nil {
		return nil
	}
	return p.p.stop(grace)
}

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string { return fileTail(p.p.logPath, n) }

// ExitError describes how the process exited, with the end of its log.
func (p *Process) ExitError() error { return p.p.exitError() }
