package sysctl_test

import (
	"errors"
	"os"
	"testing"

	"github.com/weftnet/weft/internal/sysctl"
	"github.com/weftnet/weft/internal/sysctl/sysctltest"
)

func fakeTree(t *testing.T, files map[string]string) sysctl.FS {
	t.Helper()
	return sysctl.FS{Root: sysctltest.Tree(t, files)}
}

func TestGetSetRoundTrip(t *testing.T) {
	f := fakeTree(t, map[string]string{"net/ipv4/neigh/default/gc_thresh3": "1024\n"})
	n, err := f.GetInt("net.ipv4.neigh.default.gc_thresh3")
	if err != nil || n != 1024 {
		t.Fatalf("GetInt = %d, %v; want 1024", n, err)
	}
	if err := f.SetInt("net.ipv4.neigh.default.gc_thresh3", 8192); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.GetInt("net.ipv4.neigh.default.gc_thresh3"); n != 8192 {
		t.Fatalf("after SetInt: %d, want 8192", n)
	}
}

func TestMissingIsNamed(t *testing.T) {
	f := fakeTree(t, nil)
	_, err := f.Get("net.bridge.bridge-nf-call-iptables")
	if !errors.Is(err, sysctl.ErrMissing) {
		t.Fatalf("Get of a missing sysctl: %v, want ErrMissing", err)
	}
	if err := f.Set("net.ipv4.ip_forward", "1"); !errors.Is(err, sysctl.ErrMissing) {
		t.Fatalf("Set of a missing sysctl: %v, want ErrMissing", err)
	}
	if _, err := os.Stat(f.Path("net.ipv4.ip_forward")); !os.IsNotExist(err) {
		t.Fatalf("Set created the missing sysctl: %v", err)
	}
}

func TestGetIntRejectsText(t *testing.T) {
	f := fakeTree(t, map[string]string{"net/ipv4/ip_forward": "yes\n"})
	if _, err := f.GetInt("net.ipv4.ip_forward"); err == nil {
		t.Fatal("GetInt accepted a non-number")
	}
}

func TestHostPath(t *testing.T) {
	if got, want := sysctl.Host.Path("net.ipv4.neigh.default.gc_thresh1"), "/proc/sys/net/ipv4/neigh/default/gc_thresh1"; got != want {
		t.Fatalf("Path = %s, want %s", got, want)
	}
}

func TestSlashNameKeepsDots(t *testing.T) {
	if got, want := sysctl.Host.Path("net/ipv4/conf/flannel.1/rp_filter"), "/proc/sys/net/ipv4/conf/flannel.1/rp_filter"; got != want {
		t.Fatalf("Path = %s, want %s", got, want)
	}
}
