package integration

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/testbin"
)

// `weft cleanup` on a stopped vxlan host leaves nothing of weft's behind:
// no rules, no device, no proto 87 route, no subnet.env, no state file.
func TestCleanupRemovesEverything(t *testing.T) {
	// --ip-masq, so that there are rules to remove: a host with no NAT and
	// no forward filtering gets none from weft (docs/rules.md).
	l, _ := upLabSpec(t, lab.Spec{Hosts: 2, Pods: 1, Backend: "vxlan", IPMasq: true})
	h, _ := l.Topology().Host("h1")
	if err := l.StopAgent("h1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	in := func(args ...string) string {
		out, _ := exec.Command("ip", append([]string{"netns", "exec", l.NS("h1")}, args...)...).CombinedOutput()
		return string(out)
	}
	// Everything is there before.
	if !strings.Contains(in("iptables-save"), "flanneld") || !strings.Contains(in("ip", "link"), "flannel.1") ||
		!strings.Contains(in("ip", "route", "show", "proto", "87"), "172.7.") {
		t.Fatalf("lab host lacks weft state before cleanup:\n%s\n%s", in("iptables-save"), in("ip", "route"))
	}

	out, err := exec.Command("ip", "netns", "exec", l.NS("h1"), testbin.Weft(t), "cleanup",
		"--subnet-file="+h.SubnetFile, "--state-dir="+h.Dir).CombinedOutput()
	if err != nil {
		t.Fatalf("weft cleanup: %v\n%s", err, out)
	}
	if s := in("iptables-save"); strings.Contains(s, "flanneld") || strings.Contains(s, "FLANNEL") || strings.Contains(s, "WEFT") {
		t.Errorf("rules left:\n%s", s)
	}
	if s := in("nft", "list", "ruleset"); strings.Contains(s, "flannel") {
		t.Errorf("nft tables left:\n%s", s)
	}
	if s := in("ip", "link"); strings.Contains(s, "flannel") {
		t.Errorf("devices left:\n%s", s)
	}
	if s := in("ip", "route", "show", "proto", "87"); strings.TrimSpace(s) != "" {
		t.Errorf("routes left:\n%s", s)
	}
	if _, err := os.Stat(h.SubnetFile); !os.IsNotExist(err) {
		t.Errorf("subnet.env left: %v", err)
	}
	// Running it again is fine.
	if out, err := exec.Command("ip", "netns", "exec", l.NS("h1"), testbin.Weft(t), "cleanup",
		"--subnet-file="+h.SubnetFile, "--state-dir="+h.Dir).CombinedOutput(); err != nil {
		t.Fatalf("second weft cleanup: %v\n%s", err, out)
	}
}
