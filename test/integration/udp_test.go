package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// Three hosts over the user-space udp backend: flannel0 carries the whole
// cluster network, and every pod pair talks with its own source address.
func TestUDPLab(t *testing.T) {
	l := upLabBackend(t, 3, 1, "udp")
	for _, h := range []string{"h1", "h2", "h3"} {
		out, err := exec.Command("ip", "-n", l.NS(h), "route", "show", "dev", "flannel0").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", h, err, out)
		}
		if want := "172.7.0.0/16 proto 87"; !strings.Contains(string(out), want) {
			t.Errorf("%s: flannel0 routes %q lack %q", h, out, want)
		}
		link, _ := exec.Command("ip", "-n", l.NS(h), "-d", "link", "show", "flannel0").CombinedOutput()
		if !strings.Contains(string(link), "mtu 1472") || !strings.Contains(string(link), "tun type tun") {
			t.Errorf("%s: flannel0 is not a tun with MTU 1500-28:\n%s", h, link)
		}
	}
	checks, err := l.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.OK() {
			t.Errorf("check %s → %s failed: %s", c.From, c.To, c.Problem())
		}
	}
}
