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
