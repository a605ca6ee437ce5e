package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/internal/netns"
)

// child is a lab process started by this process. Exited is closed once
// the process has exited and been reaped, so a build step that waits on it
// can notice a crash instead of timing out.
type child struct {
	name    string // "etcd", "h1 agent"
	pid     int
	logFile string
	exited  chan struct{}
	err     error // valid after exited is closed
}

// spawn starts `ip netns exec NS BIN ARGS...` detached from this process:
// in its own session (no terminal signals from the shell that ran `weft lab
// up`), stdin from /dev/null, stdout and stderr appended to logFile. `ip
// netns exec` execs in place, so the recorded pid is the weft process
// itself. The pid and its start time are written to pidFile, which is what
// lets a later `weft lab down` tell this process from an unrelated one that
// reused the pid.
func spawn(name, ns, bin string, args []string, logFile, pidFile string) (*child, error) {
	return spawnEnv(name, ns, bin, args, nil, logFile, pidFile)
}

// spawnEnv is spawn with env added to the process's environment.
func spawnEnv(name, ns, bin string, args, env []string, logFile, pidFile string) (*child, error) {
	logf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer devnull.Close()

	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	if ns == "" { // the root namespace: the lab page
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = append(childEnv(os.Environ()), env...)
	cmd.Stdin = devnull
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in netns %s: %w", name, ns, err)
	}
	c := &child{name: name, pid: cmd.Process.Pid, logFile: logFile, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()

	start, err := procStartTime(c.pid)
	if err == nil {
		err = writeFileAtomic(pidFile, fmt.Appendf(nil, "%d %d\n", c.pid, start))
	}
	if err != nil {
		_ = cmd.Process.Kill()
		<-c.exited
		return nil, fmt.Errorf("record pid of %s: %w", name, err)
	}
	return c, nil
}

// childEnv is the environment of lab processes: this process's, less what
// would make them act for something else. FLANNELD_* would reconfigure
// every agent (flanneld reads its flags from the environment too), and a
// service manager's NOTIFY_SOCKET and LISTEN_* belong to this process only.
func childEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, "FLANNELD_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") ||
			strings.HasPrefix(kv, "LISTEN_PID=") || strings.HasPrefix(kv, "LISTEN_FDS=") || strings.HasPrefix(kv, "LISTEN_FDNAMES=")
	})
}

// failure describes how the child ended, with the tail of its log, for an
// error message.
func (c *child) failure() error {
	return fmt.Errorf("%s (pid %d) exited: %v; last lines of %s:\n%s", c.name, c.pid, c.err, c.logFile, tail(c.logFile, 10))
}

// tail returns the last n lines of a file, indented, or a note that it
// could not be read.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// procStartTime returns the process's start time in clock ticks since
// boot (field 22 of /proc/PID/stat), which together with the pid names one
// process for the machine's uptime.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after the last ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// procState returns the one-letter state of a process (R, S, Z, ...).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// alive reports whether the process exists and has not exited. A zombie
// counts as dead: it holds no sockets, namespaces or files.
func alive(pid int) bool {
	st, err := procState(pid)
	return err == nil && st != 'Z' && st != 'X'
}

// readPIDFile returns the process recorded in a pid file if that very
// process (same pid and start time) is still alive.
func readPIDFile(path string) (pid int, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read pid file: %w", err)
	}
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return 0, false, fmt.Errorf("parse pid file %s: %w", path, err)
	}
	now, err := procStartTime(pid)
	if err != nil || now != start || !alive(pid) {
		return pid, false, nil
	}
	return pid, true, nil
}

// pidsInNamespaces returns the processes whose network namespace is one of
// the given named namespaces: agents, etcd, and anything a user left
// running with `weft lab exec`. Deleting a named namespace only unmounts
// it, so these must be stopped for the namespace to really go away. The
// calling process is never listed.
func pidsInNamespaces(names []string) ([]int, error) {
	type key struct{ dev, ino uint64 }
	want := map[key]bool{}
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(netns.Path(n), &st); err != nil {
			continue // already gone: nothing can be found through it
		}
		want[key{st.Dev, st.Ino}] = true
	}
	if len(want) == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st); err != nil {
			continue // exited meanwhile, or a kernel thread
		}
		if want[key{st.Dev, st.Ino}] && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// stopPIDs sends SIGTERM to every process, waits up to grace for them to
// exit, then SIGKILLs the rest and waits for those too. Processes that are
// already gone are not an error.
func stopPIDs(pids []int, grace time.Duration) error {
	signalAll := func(sig syscall.Signal) {
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
	}
	waitAll := func(d time.Duration) []int {
		deadline := time.Now().Add(d)
		for {
			var left []int
			for _, pid := range pids {
				if alive(pid) {
					left = append(left, pid)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				return left
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	signalAll(syscall.SIGTERM)
	if left := waitAll(grace); len(left) > 0 {
		pids = left
		signalAll(syscall.SIGKILL)
		if left := waitAll(5 * time.Second); len(left) > 0 {
			return fmt.Errorf("processes %v survived SIGKILL", left)
		}
	}
	return nil
}
