package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/options"
)

func TestStatusUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"weft", "status", "-o", "yaml"},
		{"weft", "status", "extra"},
		{"weft", "status", "--no-such-flag"},
		{"weft", "status", "--subnet-lease-renew-margin=0"},
	} {
		var out, errOut strings.Builder
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %s)", args, code, errOut.String())
		}
	}
	var out, errOut strings.Builder
	if code := run([]string{"weft", "status", "-h"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "Exit status") {
		t.Errorf("status -h: exit %d, help on stdout %q", code, out.String())
	}
}

// The agent's FLANNELD_* variables reach status's agent flags; the command
// line wins, and status's own flags read nothing from the environment.
func TestStatusAppliesAgentEnvironment(t *testing.T) {
	opts := options.Defaults()
	fs := flag.NewFlagSet("weft status", flag.ContinueOnError)
	opts.AddFlags(fs)
	output := fs.String("o", "table", "")
	if err := fs.Parse([]string{"--public-ip=10.0.0.9"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"FLANNELD_SUBNET_FILE":    "/run/x/subnet.env",
		"FLANNELD_PUBLIC_IP":      "10.0.0.1",
		"FLANNELD_ETCD_ENDPOINTS": "https://etcd:2379",
		"FLANNELD_O":              "json",
	}
	if err := applyAgentEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if opts.SubnetFile != "/run/x/subnet.env" || opts.EtcdEndpoints != "https://etcd:2379" {
		t.Errorf("environment not applied: subnet file %q, endpoints %q", opts.SubnetFile, opts.EtcdEndpoints)
	}
	if opts.PublicIP != "10.0.0.9" {
		t.Errorf("--public-ip = %q, want the command line's 10.0.0.9", opts.PublicIP)
	}
	if *output != "table" {
		t.Errorf("-o = %q: status's own flags must not read FLANNELD_*", *output)
	}

	bad := map[string]string{"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "soon"}
	if err := applyAgentEnv(fs, func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), "FLANNELD_SUBNET_LEASE_RENEW_MARGIN") {
		t.Errorf("bad variable: err = %v, want one naming it", err)
	}
}

// With the store out of reach status fails with exit 1 and says where it
// looked.
func TestStatusStoreUnreachable(t *testing.T) {
	var out, errOut strings.Builder
	code := run([]string{"weft", "status", "--etcd-endpoints=http://127.0.0.1:1", "--timeout=1s"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "http://127.0.0.1:1") || !strings.Contains(errOut.String(), "read the network config") {
		t.Errorf("stderr %q does not say what failed where", errOut.String())
	}
}
