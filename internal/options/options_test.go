package options

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaultsAreFlanneldDefaults(t *testing.T) {
	o, _, err := Parse("weft", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.EtcdEndpoints != "http://127.0.0.1:4001,http://127.0.0.1:2379" || o.EtcdPrefix != "/coreos.com/network" ||
		o.SubnetFile != "/run/flannel/subnet.env" || o.SubnetLeaseRenewMargin != 60 || o.HealthzIP != "0.0.0.0" ||
		o.HealthzPort != 0 || o.IPTablesResync != 5 || o.IPMasq {
		t.Fatalf("defaults differ from flanneld's: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// The seed's flanneld.sh, verbatim flags.
func TestSeedCommandLine(t *testing.T) {
	args := []string{
		"--public-ip=10.4.7.21",
		"--etcd-endpoints=https://10.4.7.12:2379,https://10.4.7.21:2379,https://10.4.7.22:2379",
		"--etcd-keyfile=./cert/client-key.pem",
		"--etcd-certfile=./cert/client.pem",
		"--etcd-cafile=./cert/ca.pem",
		"--iface=eth0",
		"--subnet-file=./subnet.env",
		"--healthz-port=2401",
	}
	o, _, err := Parse("flanneld", args, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := o.Endpoints(); len(got) != 3 || got[2] != "https://10.4.7.22:2379" {
		t.Fatalf("endpoints %q", got)
	}
	if o.PublicIP != "10.4.7.21" || len(o.Iface) != 1 || o.Iface[0] != "eth0" || o.HealthzPort != 2401 ||
		o.EtcdCAFile != "./cert/ca.pem" || o.SubnetFile != "./subnet.env" {
		t.Fatalf("parsed %+v", o)
	}
}

func TestEnvFillsUnsetFlagsAndCommandLineWins(t *testing.T) {
	e := env(map[string]string{
		"FLANNELD_ETCD_PREFIX":               "/atomic.io/network",
		"FLANNELD_PUBLIC_IP":                 "10.0.0.9",
		"FLANNELD_IP_MASQ":                   "true",
		"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "30",
		"FLANNELD_IFACE":                     "eth1",
	})
	o, _, err := Parse("flanneld", []string{"--public-ip=10.0.0.1", "-iface", "eth0", "--iface", "10.0.0.1"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if o.EtcdPrefix != "/atomic.io/network" || !o.IPMasq || o.SubnetLeaseRenewMargin != 30 {
		t.Fatalf("env not applied: %+v", o)
	}
	if o.PublicIP != "10.0.0.1" {
		t.Fatalf("command line must win over env, got public-ip %q", o.PublicIP)
	}
	if strings.Join(o.Iface, ",") != "eth0,10.0.0.1" {
		t.Fatalf("iface %q: repeated flag must accumulate and env must not add to it", o.Iface)
	}
}

func TestBadEnvValueNamesTheVariable(t *testing.T) {
	_, _, err := Parse("flanneld", nil, env(map[string]string{"FLANNELD_HEALTHZ_PORT": "eighty"}))
	if err == nil || !strings.Contains(err.Error(), "FLANNELD_HEALTHZ_PORT") {
		t.Fatalf("want error naming FLANNELD_HEALTHZ_PORT, got %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"margin too small", func(o *Options) { o.SubnetLeaseRenewMargin = 0 }, "between 1 and 1439"},
		{"margin too big", func(o *Options) { o.SubnetLeaseRenewMargin = 1440 }, "between 1 and 1439"},
		{"cert without key", func(o *Options) { o.EtcdCertfile = "c.pem" }, "together"},
		{"log format", func(o *Options) { o.LogFormat = "xml" }, "text or json"},
		{"log level", func(o *Options) { o.LogLevel = "loud" }, "debug, info"},
		{"reconcile", func(o *Options) { o.ReconcilePeriod = time.Millisecond }, "reconcile-period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults()
			tc.mod(&o)
			err := o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestPasswordNeverLogged(t *testing.T) {
	o := Defaults()
	o.EtcdPassword = "s3cret-pw"
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("opts", "options", o)
	if strings.Contains(b.String(), "s3cret-pw") {
		t.Fatalf("password leaked into log: %s", b.String())
	}
	if !strings.Contains(b.String(), "redacted") {
		t.Fatalf("expected redaction marker: %s", b.String())
	}
}

// Tuning the kernel is opt-in, by flag or by its FLANNELD_ twin.
func TestRaiseNeighGCThreshIsOffByDefaultAndHasAnEnvTwin(t *testing.T) {
	o, _, err := Parse("weft", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if o.RaiseNeighGCThresh || o.ProcRoot != "/proc" {
		t.Fatalf("defaults: raise=%v proc-root=%q; want off and /proc", o.RaiseNeighGCThresh, o.ProcRoot)
	}
	o, _, err = Parse("weft", nil, env(map[string]string{"FLANNELD_RAISE_NEIGH_GC_THRESH": "true", "FLANNELD_PROC_ROOT": "/host/proc"}))
	if err != nil {
		t.Fatal(err)
	}
	if !o.RaiseNeighGCThresh || o.ProcRoot != "/host/proc" {
		t.Fatalf("from the environment: raise=%v proc-root=%q", o.RaiseNeighGCThresh, o.ProcRoot)
	}
	o, _, err = Parse("weft", []string{"--raise-neigh-gc-thresh"}, env(nil))
	if err != nil || !o.RaiseNeighGCThresh {
		t.Fatalf("--raise-neigh-gc-thresh: %v, %v", o.RaiseNeighGCThresh, err)
	}
}
