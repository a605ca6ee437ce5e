package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// privateDirs are the paths a node keeps to itself, bind-mounted in its
// mount namespace from a directory of its own: what kubelet, containerd,
// the CNI plugins and weft write, so that three nodes on one kernel never
// see each other's files. /run/netns too: containerd pins pod network
// namespaces there, and they must not show up in the host's `ip netns`.
var privateDirs = []string{
	"/var/lib/kubelet",
	"/var/lib/containerd",
	"/run/containerd",
	"/etc/cni/net.d",
	"/opt/cni/bin",
	"/var/lib/cni",
	"/run/flannel",
	"/var/lib/weft",
	"/var/log/pods",
	"/var/log/containers",
	"/run/netns",
}

// kernelDefaults are the host-wide sysctls kubelet sets to its defaults at
// start (protectKernelDefaults=false) and refuses to start without
// (protectKernelDefaults=true). A node masks each with a file of its own
// holding kubelet's value, so that kubelet sees what it wants and the
// machine's settings stay as they are.
var kernelDefaults = map[string]string{
	"/proc/sys/vm/overcommit_memory":      "1",
	"/proc/sys/vm/panic_on_oom":           "0",
	"/proc/sys/kernel/panic":              "10",
	"/proc/sys/kernel/panic_on_oops":      "1",
	"/proc/sys/kernel/keys/root_maxkeys":  "1000000",
	"/proc/sys/kernel/keys/root_maxbytes": "25000000",
}

// cgroupMount is a cgroup file system mounted on this machine.
type cgroupMount struct{ point, fstype, opts string }

// cgroupMounts are the cgroup hierarchies mounted here (v1, and v2's
// unified one of a hybrid setup): a node mounts them again in its mount
// namespace, whose /sys is the fresh sysfs `ip netns exec` mounts for
// the node's network namespace, and gives each v1 hierarchy a cgroup root
// of its own (kubelet's cgroupRoot).
func cgroupMounts() ([]cgroupMount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []cgroupMount
	v1 := 0
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		pf := strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 || (pf[0] != "cgroup" && pf[0] != "cgroup2") {
			continue
		}
		// The super block's options name the hierarchy (cpu,
		// name=systemd...); mounting with the same ones joins it.
		var opts []string
		for _, o := range strings.Split(pf[2], ",") {
			if o != "rw" && o != "ro" {
				opts = append(opts, o)
			}
		}
		out = append(out, cgroupMount{point: f[4], fstype: pf[0], opts: strings.Join(opts, ",")})
		if pf[0] == "cgroup" {
			v1++
		}
	}
	if v1 == 0 {
		return nil, errors.New("no cgroup v1 hierarchy is mounted (this test drives kubelet with cgroupfs on cgroup v1)")
	}
	return out, nil
}

// proc is a process the test started, stopped by its pid.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// start runs argv with its output in logPath; the process dies with the
// test binary (Pdeathsig) should the test be killed before its cleanup.
func start(t testing.TB, name, logPath string, env []string, argv ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p
}

// node is one "machine": a network namespace (its host network), a mount
// namespace held by a sleeping process, and containerd, kubelet and
// kube-proxy entered into both.
type node struct {
	name, ns, ip string
	resolver     string // the address in the node's /etc/resolv.conf
	dir          string // everything of this node on the real disk
	holder       *proc
	mntNS        string // the holder's /proc/PID/ns/mnt link target
	cgroupRoot   string // kubelet's cgroupRoot, one per node
	procs        []*proc
	hierarchies  []string // cgroup v1 mount points
}

// nsenter returns argv run inside the node's mount and network namespace.
// nsenter execs the program, so a recorded pid is the program's.
func (n *node) nsenter(argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(n.holder.cmd.Process.Pid), "-m", "-n", "--"}, argv...)
}

// run runs argv in the node and returns its combined output.
func (n *node) run(argv ...string) (string, error) {
	a := n.nsenter(argv...)
	out, err := exec.Command(a[0], a[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), n.name, err, out)
	}
	return string(out), nil
}

// setUp creates the mount namespace with the private directories and the
// kernel-default masks, and the node's cgroup root in every hierarchy.
func (n *node) setUp(t *testing.T) {
	t.Helper()
	n.holder = start(t, n.name+"-holder", filepath.Join(n.dir, "holder.log"), nil,
		"ip", "netns", "exec", n.ns, "unshare", "--mount", "--propagation", "private", "sleep", "infinity")
	t.Cleanup(n.tearDown)
	// The holder is in its namespace once its mnt link differs from ours.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.holder.cmd.Process.Pid))
		if err == nil && l != self {
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.holder.cmd.Process.Pid)); strings.HasSuffix(exe, "/sleep") {
				n.mntNS = l
				break
			}
		}
		if !n.holder.running() || time.Now().After(deadline) {
			b, _ := os.ReadFile(n.holder.log)
			t.Fatalf("%s: the mount namespace holder did not come up: %s", n.name, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range privateDirs {
		src := filepath.Join(n.dir, "root", d)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		// The mount point must exist on the shared file system; an empty
		// directory is all that leaks, and only the first time.
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := n.run("mount", "--bind", src, d); err != nil {
			t.Fatal(err)
		}
	}
	for path, val := range kernelDefaults {
		f := filepath.Join(n.dir, "sysctl", strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", "."))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(val+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := n.run("mount", "--bind", f, path); err != nil {
			t.Fatal(err)
		}
	}
	// The node's resolver is the underlay's address, where nothing
	// listens: a lookup (an image pull of a missing tag) fails at once
	// with "connection refused" and no query leaves for the machine's
	// own resolver.
	resolv := filepath.Join(n.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+n.resolver+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := n.run("mount", "--bind", resolv, "/etc/resolv.conf"); err != nil {
		t.Fatal(err)
	}
	cgs, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.run("mount", "-t", "tmpfs", "-o", "mode=755", "cgroup", "/sys/fs/cgroup"); err != nil {
		t.Fatal(err)
	}
	for _, m := range cgs {
		args := []string{"mount", "-t", m.fstype}
		if m.opts != "" {
			args = append(args, "-o", m.opts)
		}
		if _, err := n.run("mkdir", "-p", m.point); err != nil {
			t.Fatal(err)
		}
		if _, err := n.run(append(args, m.fstype, m.point)...); err != nil {
			t.Fatal(err)
		}
		if m.fstype == "cgroup" {
			n.hierarchies = append(n.hierarchies, m.point)
		}
	}
	for _, h := range n.hierarchies {
		dir := filepath.Join(h, n.cgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("%s: cgroup root: %v", n.name, err)
		}
		// A new v1 cpuset starts with no CPUs and no memory nodes, and
		// nothing can join it: give it its parent's, as systemd would.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					t.Fatalf("%s: %s of its cgroup root: %v", n.name, f, err)
				}
			}
		}
	}
}

// startProc starts a program inside the node and records it for tearDown.
func (n *node) startProc(t *testing.T, name string, env []string, argv ...string) *proc {
	t.Helper()
	p := start(t, n.name+"-"+name, filepath.Join(n.dir, name+".log"), env, n.nsenter(argv...)...)
	n.procs = append(n.procs, p)
	return p
}

// tearDown stops everything the node ran: its programs by their pids
// (kubelet first, so it restarts nothing), then every process left in
// its cgroup root (containers) or in its mount namespace (containerd's
// shims, which outlive containerd by design), then the holder. With the
// last process of the mount namespace gone, the kernel unmounts all of
// its mounts (container root file systems, pod netns pins). Finally the
// cgroup directories go, deepest first.
func (n *node) tearDown() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.procs[i].stop(10 * time.Second)
	}
	for attempt := 0; attempt < 50; attempt++ {
		pids := n.leftovers()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n.holder != nil {
		n.holder.stop(time.Second)
	}
	for _, h := range n.hierarchies {
		removeCgroupTree(filepath.Join(h, n.cgroupRoot))
	}
}

// leftovers lists the pids in the node's cgroup root or mount namespace,
// the holder excepted.
func (n *node) leftovers() []int {
	seen := map[int]bool{}
	for _, h := range n.hierarchies {
		_ = filepath.WalkDir(filepath.Join(h, n.cgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	if n.mntNS != "" {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && l == n.mntNS {
				seen[pid] = true
			}
		}
	}
	if n.holder != nil {
		delete(seen, n.holder.cmd.Process.Pid)
	}
	var out []int
	for pid := range seen {
		out = append(out, pid)
	}
	return out
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first (cgroup directories go with rmdir only, and only when empty).
func removeCgroupTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}

// logTail is the last n lines of a file, for failure messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
