package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/lab"
	"github.com/weftnet/weft/internal/lease"
)

// vtepMAC reads a host's published VtepMAC from its lease in etcd.
func vtepMAC(t *testing.T, l *lab.Lab, host string) string {
	t.Helper()
	cli := etcd(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := prefix + "/subnets/" + lease.KeyName(subnetOf(t, l, host), netip.Prefix{})
	r, err := cli.Get(ctx, key)
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	var a lease.Attrs
	if err := json.Unmarshal(r.Kvs[0].Value, &a); err != nil {
		t.Fatal(err)
	}
	var bd struct {
		VNI     int
		VtepMAC string
	}
	if err := json.Unmarshal(a.BackendData, &bd); err != nil {
		t.Fatalf("backend data %s: %v", a.BackendData, err)
	}
	if a.BackendType != "vxlan" || bd.VNI != 1 {
		t.Fatalf("lease of %s: %s", host, r.Kvs[0].Value)
	}
	return bd.VtepMAC
}

func linkMAC(t *testing.T, l *lab.Lab, host, dev string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", l.NS(host), "-o", "link", "show", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show %s on %s: %v: %s", dev, host, err, out)
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "link/ether" {
			return f[i+1]
		}
	}
	t.Fatalf("no MAC in %q", out)
	return ""
}

// Three hosts over vxlan: every host has flannel's three entries per peer,
// every pod pair talks with its own source address, and a restarted agent
// keeps its VTEP MAC (flannel's users lost cross-host traffic when it
// changed) and its pods reachable.
func TestVXLANLab(t *testing.T) {
	l := upLabBackend(t, 3, 1, "vxlan")

	for _, h := range []string{"h1", "h2", "h3"} {
		if got, want := linkMAC(t, l, h, "flannel.1"), vtepMAC(t, l, h); got != want {
			t.Fatalf("%s: flannel.1 has MAC %s, lease says %s", h, got, want)
		}
	}
	for _, from := range []string{"h1", "h2", "h3"} {
		for _, to := range []string{"h1", "h2", "h3"} {
			if from == to {
				continue
			}
			s := subnetOf(t, l, to)
			gw := s.Addr().String()
			route, _ := exec.Command("ip", "-n", l.NS(from), "route", "show", "exact", s.String()).CombinedOutput()
			if want := fmt.Sprintf("%s via %s dev flannel.1 proto 87 onlink", s, gw); strings.TrimSpace(string(route)) != want {
				t.Errorf("%s route to %s: %q, want %q", from, to, strings.TrimSpace(string(route)), want)
			}
			neigh, _ := exec.Command("ip", "-n", l.NS(from), "neigh", "show", gw, "dev", "flannel.1").CombinedOutput()
			if want := gw + " lladdr " + vtepMAC(t, l, to) + " PERMANENT"; strings.TrimSpace(string(neigh)) != want {
				t.Errorf("%s neighbour for %s: %q, want %q", from, to, strings.TrimSpace(string(neigh)), want)
			}
			fdb, _ := exec.Command("bridge", "-n", l.NS(from), "fdb", "show", "dev", "flannel.1").CombinedOutput()
			if want := vtepMAC(t, l, to) + " dst " + hostIP(t, l, to).String() + " self permanent"; !strings.Contains(string(fdb), want) {
				t.Errorf("%s fdb lacks %q:\n%s", from, want, fdb)
			}
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

	mac := vtepMAC(t, l, "h2")
	if err := l.StopAgent("h2", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.StartAgent(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if got := vtepMAC(t, l, "h2"); got != mac {
		t.Fatalf("VtepMAC changed across restart: %s → %s", mac, got)
	}
	if got := linkMAC(t, l, "h2", "flannel.1"); got != mac {
		t.Fatalf("flannel.1 MAC after restart %s, want %s", got, mac)
	}
	dst, _ := l.PodAddr("h2p1")
	if _, err := pingOnce(l, "h1p1", dst); err != nil {
		t.Fatalf("h1p1 → h2p1 after restart: %v", err)
	}
}
