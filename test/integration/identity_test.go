package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/agent"
	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
	"github.com/weftnet/weft/internal/nstest"
	"github.com/weftnet/weft/internal/testbin"
)

// logBuffer is an agent's output, written by the process and read by the
// test.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgentWith runs an agent in host's namespace with host's lab flags
// changed by edit; it is killed when the test ends.
func startAgentWith(t *testing.T, l *lab.Lab, host string, edit func(args []string) []string) *logBuffer {
	t.Helper()
	h, ok := l.Topology().Host(host)
	if !ok {
		t.Fatalf("no host %s", host)
	}
	bin, args := lab.AgentCommand(testbin.Weft(t), edit(l.Topology().AgentArgs(h)))
	out := &logBuffer{}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.NS(host), bin}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("log of the extra agent on %s:\n%s", host, out.String())
		}
	})
	return out
}

// setFlag replaces (or adds) --name=value in args.
func setFlag(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+1)
	for _, a := range args {
		if !strings.HasPrefix(a, "--"+name+"=") {
			out = append(out, a)
		}
	}
	return append(out, "--"+name+"="+value)
}

func leaseValue(t *testing.T, l *lab.Lab, sn netip.Prefix) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := etcd(t, l).Get(ctx, prefix+"/subnets/"+lease.KeyName(sn, netip.Prefix{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

func readyz(l *lab.Lab, host string) (int, string) {
	code, body, err := l.AgentGet(host, "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	return code, body
}

// Two hosts with one --public-ip (cloned VMs, Vagrant's 10.0.2.15): the
// second agent refuses the first's live lease instead of taking it over
// with its VTEP MAC; it says why on /readyz and in one ERROR line naming
// the other lease and the fix, the first keeps its lease, MAC and traffic,
// and the second proceeds once the other lease is gone.
func TestSamePublicIPIsRefused(t *testing.T) {
	l := upLabBackend(t, 3, 1, "vxlan")
	h1IP := hostIP(t, l, "h1")
	s1 := subnetOf(t, l, "h1")
	before := leaseValue(t, l, s1)
	mac := vtepMAC(t, l, "h1")

	// h2 is replaced by a host configured with h1's address: its own
	// state directory and subnet file, as a second machine has.
	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := startAgentWith(t, l, "h2", func(args []string) []string {
		args = setFlag(args, "public-ip", h1IP.String())
		args = setFlag(args, "state-dir", filepath.Join(dir, "state"))
		return setFlag(args, "subnet-file", filepath.Join(dir, "subnet.env"))
	})
	wantReason := fmt.Sprintf("two hosts use public IP %s: set --public-ip or --iface on one of them", h1IP)
	nstest.Eventually(t, 20*time.Second, func() error {
		code, body := readyz(l, "h2")
		if code != 503 || !strings.Contains(body, wantReason) || !strings.Contains(body, "refusing the lease "+s1.String()) {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	key := prefix + "/subnets/" + lease.KeyName(s1, netip.Prefix{})
	var errLine string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, wantReason) {
			errLine = line
		}
	}
	var h1ID struct{ WeftHostID string }
	_ = json.Unmarshal([]byte(before), &h1ID)
	if errLine == "" || !strings.Contains(errLine, "other-lease="+key) || !strings.Contains(errLine, "other-host-id="+h1ID.WeftHostID) || h1ID.WeftHostID == "" {
		t.Fatalf("no ERROR line naming %s and host ID %q:\n%s", key, h1ID.WeftHostID, out.String())
	}
	t.Logf("refusal: %s", errLine)
	if n := strings.Count(out.String(), wantReason+"; not taking over"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "subnet.env")); !os.IsNotExist(err) {
		t.Errorf("the refused agent wrote its subnet file: %v", err)
	}

	// h1 keeps its lease, VTEP MAC and traffic.
	if got := leaseValue(t, l, s1); got != before {
		t.Fatalf("h1's lease changed: %s → %s", before, got)
	}
	if got := linkMAC(t, l, "h1", "flannel.1"); got != mac {
		t.Fatalf("h1's flannel.1 MAC %s, want %s", got, mac)
	}
	dst, _ := l.PodAddr("h1p1")
	if _, err := pingOnce(l, "h3p1", dst); err != nil {
		t.Fatalf("h3p1 → h1p1 while h2 is refused: %v", err)
	}
	if code, body, err := l.AgentGet("h2", "/metrics"); err != nil || code != 200 || !strings.Contains(body, `weft_identity_conflicts_total{kind="public_ip"} 1`) {
		t.Errorf("metric: %d %v\n%s", code, err, grepLines(body, "weft_identity"))
	}

	// When h1 is gone for good (its agent stopped, its lease deleted),
	// the second host proceeds with the address.
	if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := etcd(t, l).Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	nstest.Eventually(t, 20*time.Second, func() error {
		if code, body := readyz(l, "h2"); code != 200 {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	t.Logf("the second host was ready %v after the other lease was deleted", time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(out.String(), "the lease is no longer refused") {
		t.Errorf("no line saying the refusal ended:\n%s", out.String())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// A host whose state directory was copied from another (a cloned image
// carrying /var/lib/weft): it starts with the other's VTEP MAC, sees that
// a peer which was there first publishes it, picks a new one, sets it on
// flannel.1 and republishes its lease; a third host then programs both,
// and pods on all three reach each other.
func TestClonedStateDirGetsItsOwnVTEPMAC(t *testing.T) {
	l := upLabBackend(t, 3, 1, "vxlan")
	topo := l.Topology()
	h1, _ := topo.Host("h1")
	h3, _ := topo.Host("h3")
	mac1 := vtepMAC(t, l, "h1")
	s3 := subnetOf(t, l, "h3")

	// h3 becomes a clone of h1: its agent stopped, its lease gone (a new
	// machine has none), h1's weft state copied over its own. Its
	// subnet.env stays, so that it takes its subnet back and its pod
	// keeps its address.
	if err := l.StopAgent("h3", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := etcd(t, l).Delete(ctx, prefix+"/subnets/"+lease.KeyName(s3, netip.Prefix{})); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{agent.HostIDFileName, vxlan.MACFileName(1)} {
		b, err := os.ReadFile(filepath.Join(h1.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h3.Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	if err := l.StartAgent(ctx, "h3"); err != nil {
		t.Fatal(err)
	}
	if got := subnetOf(t, l, "h3"); got != s3 {
		t.Fatalf("the clone took %s, want its previous %s", got, s3)
	}
	var mac3 string
	nstest.Eventually(t, 20*time.Second, func() error {
		mac3 = vtepMAC(t, l, "h3")
		if mac3 == mac1 {
			return fmt.Errorf("h3 still publishes h1's VTEP MAC %s", mac1)
		}
		return nil
	})
	t.Logf("the clone published its own VTEP MAC %v after its start (h1 keeps %s, h3 now %s)", time.Since(t0).Round(time.Millisecond), mac1, mac3)
	if got := linkMAC(t, l, "h3", "flannel.1"); got != mac3 {
		t.Fatalf("h3's flannel.1 has %s, its lease %s", got, mac3)
	}
	if b, err := os.ReadFile(filepath.Join(h3.Dir, vxlan.MACFileName(1))); err != nil || strings.TrimSpace(string(b)) != mac3 {
		t.Fatalf("h3's MAC file holds %q (%v), want %s", b, err, mac3)
	}
	if got := vtepMAC(t, l, "h1"); got != mac1 {
		t.Fatalf("h1's VTEP MAC changed: %s → %s", mac1, got)
	}
	if log := l.AgentLog("h3"); !strings.Contains(log, "picked a new address and republishing the lease") || !strings.Contains(log, "old="+mac1) {
		t.Fatalf("h3 did not say why it picked a new VTEP MAC:\n%s", log)
	}

	// The third host programs both, each with its own MAC.
	for host, mac := range map[string]string{"h1": mac1, "h3": mac3} {
		gw := subnetOf(t, l, host).Addr().String()
		nstest.Eventually(t, 20*time.Second, func() error {
			neigh, _ := exec.Command("ip", "-n", l.NS("h2"), "neigh", "show", gw, "dev", "flannel.1").CombinedOutput()
			if want := gw + " lladdr " + mac + " PERMANENT"; strings.TrimSpace(string(neigh)) != want {
				return fmt.Errorf("h2's neighbour for %s: %q, want %q", host, strings.TrimSpace(string(neigh)), want)
			}
			return nil
		})
	}
	for _, pair := range [][2]string{{"h2p1", "h1p1"}, {"h2p1", "h3p1"}, {"h1p1", "h3p1"}, {"h3p1", "h1p1"}} {
		dst, _ := l.PodAddr(pair[1])
		nstest.Eventually(t, 10*time.Second, func() error {
			_, err := pingOnce(l, pair[0], dst)
			return err
		})
	}
}

// A host restarted while the network config says another Network (an
// operator's mistake, or a change made in the wrong order) keeps its live
// lease and its subnet.env instead of taking a random new subnet that its
// running pods are not on: not ready, with the reason, and an ERROR saying
// what changed and what to do. With the config restored it is ready again
// on the same subnet, its pods reachable throughout.
func TestConfigChangeKeepsTheLiveSubnet(t *testing.T) {
	l := upLab(t, 3, 1)
	cli := etcd(t, l)
	h2, _ := l.Topology().Host("h2")
	s2 := subnetOf(t, l, "h2")
	lease2 := leaseValue(t, l, s2)
	env2, err := os.ReadFile(h2.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, prefix+"/config")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("config: %v", err)
	}
	good := string(r.Kvs[0].Value)
	bad := strings.Replace(good, "172.7.0.0/16", "172.8.0.0/16", 1)
	if bad == good {
		t.Fatalf("config %s does not name 172.7.0.0/16", good)
	}

	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, prefix+"/config", bad); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
	err = l.StartAgent(short, "h2") // not ready: it keeps running, refusing
	cancelShort()
	if err == nil {
		t.Fatal("h2 became ready under a config that does not fit its subnet")
	}
	want := fmt.Sprintf("keeping subnet %s: the network config changed and no longer fits it (outside Network 172.8.0.0/16)", s2)
	nstest.Eventually(t, 15*time.Second, func() error {
		if code, body := readyz(l, "h2"); code != 503 || !strings.Contains(body, want) {
			return fmt.Errorf("/readyz = %d %q, want 503 with %q", code, body, want)
		}
		return nil
	})
	log := l.AgentLog("h2")
	var errLine string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "the network config no longer fits this host's subnet") {
			errLine = line
		}
	}
	key := prefix + "/subnets/" + lease.KeyName(s2, netip.Prefix{})
	for _, part := range []string{"subnet=" + s2.String(), `now="Network 172.8.0.0/16, SubnetLen 24"`, `was="Network 172.7.0.0/16 with /24 subnets`, "restore the network config", "delete the key " + key} {
		if !strings.Contains(errLine, part) {
			t.Errorf("ERROR line lacks %q: %s", part, errLine)
		}
	}
	t.Logf("refusal: %s", errLine)
	if got := leaseValue(t, l, s2); got != lease2 {
		t.Fatalf("h2's lease changed under the bad config: %q → %q", lease2, got)
	}
	if got, _ := os.ReadFile(h2.SubnetFile); !bytes.Equal(got, env2) {
		t.Fatalf("subnet.env changed: %s → %s", env2, got)
	}
	dst, _ := l.PodAddr("h2p1")
	if _, err := pingOnce(l, "h1p1", dst); err != nil {
		t.Fatalf("h1p1 → h2p1 while h2 waits: %v", err)
	}

	// Restored: ready again on the same subnet.
	if _, err := cli.Put(ctx, prefix+"/config", good); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	nstest.Eventually(t, 20*time.Second, func() error {
		if code, body := readyz(l, "h2"); code != 200 {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	t.Logf("ready again %v after the config was restored", time.Since(t0).Round(time.Millisecond))
	if got, _ := os.ReadFile(h2.SubnetFile); !bytes.Equal(got, env2) {
		t.Fatalf("subnet.env after the config was restored: %s, want %s", got, env2)
	}
	if v := leaseValue(t, l, s2); v == "" {
		t.Fatalf("h2's lease %s is gone", s2)
	}
	if _, err := pingOnce(l, "h1p1", dst); err != nil {
		t.Fatalf("h1p1 → h2p1 after the config was restored: %v", err)
	}
}
