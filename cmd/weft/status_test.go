package main

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/options"
	"github.com/weftnet/weft/internal/status"
)

func TestStatusUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"weft", "status", "-o", "yaml"},
		{"weft", "status", "extra"},
		{"weft", "status", "--no-such-flag"},
		{"weft", "status", "--subnet-lease-renew-margin=0"},
		{"weft", "status", "--log-format=xml"},
		{"weft", "status", "--etcd-certfile=c.pem"},
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
	var a statusArgs
	fs := statusFlags(&opts, &a)
	if err := fs.Parse([]string{"--public-ip=10.0.0.9"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"FLANNELD_SUBNET_FILE":     "/run/x/subnet.env",
		"FLANNELD_PUBLIC_IP":       "10.0.0.1",
		"FLANNELD_ETCD_ENDPOINTS":  "https://etcd:2379",
		"FLANNELD_KUBE_SUBNET_MGR": "true",
		"FLANNELD_O":               "json",
		"FLANNELD_CHECK":           "true",
	}
	if err := options.ApplyEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if opts.SubnetFile != "/run/x/subnet.env" || opts.EtcdEndpoints != "https://etcd:2379" || !opts.KubeSubnetMgr {
		t.Errorf("environment not applied: subnet file %q, endpoints %q, kube %v", opts.SubnetFile, opts.EtcdEndpoints, opts.KubeSubnetMgr)
	}
	if opts.PublicIP != "10.0.0.9" {
		t.Errorf("--public-ip = %q, want the command line's 10.0.0.9", opts.PublicIP)
	}
	if a.output != "table" || a.check {
		t.Errorf("-o = %q, --check = %v: status's own flags must not read FLANNELD_*", a.output, a.check)
	}

	bad := map[string]string{"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "soon"}
	if err := options.ApplyEnv(fs, func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), "FLANNELD_SUBNET_LEASE_RENEW_MARGIN") {
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

// Scripts tell "warnings only" from problems by the exit status.
func TestStatusExit(t *testing.T) {
	for _, tc := range []struct {
		rep  status.Report
		want int
	}{
		{status.Report{OK: true}, 0},
		{status.Report{OK: true, WarningCount: 2}, 3},
		{status.Report{OK: false, ProblemCount: 1}, 1},
		{status.Report{OK: false, ProblemCount: 1, WarningCount: 2}, 1},
	} {
		if got := statusExit(tc.rep); got != tc.want {
			t.Errorf("statusExit(ok %v, %d problems, %d warnings) = %d, want %d", tc.rep.OK, tc.rep.ProblemCount, tc.rep.WarningCount, got, tc.want)
		}
	}
}
