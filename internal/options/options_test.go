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
		o.SubnetFile != "/run/flannel/subnet.env" || o.SubnetLeaseRenewMargin != 60 || o.HealthzIP != "127.0.0.1" ||
		o.HealthzPort != 0 || o.IPTablesResync != 5 || o.IPMasq {
		t.Fatalf("defaults differ from flanneld's (but for --healthz-ip, which stays on the host): %+v", o)
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

// --ip-blackhole-route is off by default, as in flanneld, and is set by the
// flag or by FLANNELD_IP_BLACKHOLE_ROUTE.
func TestIPBlackholeRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, false},
		{"flag", []string{"--ip-blackhole-route"}, nil, true},
		{"single dash", []string{"-ip-blackhole-route=true"}, nil, true},
		{"env", nil, map[string]string{"FLANNELD_IP_BLACKHOLE_ROUTE": "true"}, true},
		{"command line wins", []string{"--ip-blackhole-route=false"}, map[string]string{"FLANNELD_IP_BLACKHOLE_ROUTE": "true"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := Parse("flanneld", tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if o.IPBlackholeRoute != tc.want {
				t.Fatalf("IPBlackholeRoute = %v, want %v", o.IPBlackholeRoute, tc.want)
			}
		})
	}
	_, _, err := Parse("flanneld", nil, env(map[string]string{"FLANNELD_IP_BLACKHOLE_ROUTE": "maybe"}))
	if err == nil || !strings.Contains(err.Error(), "FLANNELD_IP_BLACKHOLE_ROUTE") {
		t.Fatalf("bad env value: %v, want an error naming the variable", err)
	}
}

// The klog forms flanneld's units and manifests pass are accepted: -v
// sets the level, the others change nothing but are remembered for the
// agent's debug line.
func TestKlogFlags(t *testing.T) {
	args := []string{
		"-v=2", "--vmodule=agent*=3", "-log_backtrace_at=main.go:1", "--logtostderr", "-alsologtostderr=false",
		"--log_dir", "/var/log/flannel", "-stderrthreshold=INFO",
	}
	o, _, err := Parse("flanneld", args, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Verbosity != 2 {
		t.Fatalf("Verbosity = %d, want 2", o.Verbosity)
	}
	want := []string{"alsologtostderr=false", "log_backtrace_at=main.go:1", "log_dir=/var/log/flannel", "logtostderr=true", "stderrthreshold=INFO", "vmodule=agent*=3"}
	if strings.Join(o.Klog.Given, " ") != strings.Join(want, " ") {
		t.Fatalf("Klog.Given = %q, want %q", o.Klog.Given, want)
	}

	// FLANNELD_V and friends, as flanneld reads them.
	o, _, err = Parse("flanneld", nil, env(map[string]string{"FLANNELD_V": "4", "FLANNELD_LOGTOSTDERR": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Verbosity != 4 || len(o.Klog.Given) != 1 || o.Klog.Given[0] != "logtostderr=true" {
		t.Fatalf("from env: Verbosity %d, Given %q", o.Verbosity, o.Klog.Given)
	}

	// Nothing given, nothing to report.
	o, _, err = Parse("flanneld", []string{"--ip-masq"}, env(nil))
	if err != nil || len(o.Klog.Given) != 0 {
		t.Fatalf("Given = %q, err %v; want none", o.Klog.Given, err)
	}
}

// -v N: 0 keeps --log-level; 1 to 4 are debug (weft's only level below
// info); beyond 4 the level drops to -N so that the Kubernetes client's
// klog V(N) lines, which arrive at slog level -N, show too.
func TestVerbosityLevel(t *testing.T) {
	for _, tc := range []struct {
		v        int
		logLevel string
		want     slog.Level
	}{
		{0, "info", slog.LevelInfo},
		{0, "warn", slog.LevelWarn},
		{1, "warn", slog.LevelDebug},
		{4, "info", slog.LevelDebug},
		{6, "info", slog.Level(-6)},
		{10, "info", slog.Level(-10)},
	} {
		o := Defaults()
		o.Verbosity, o.LogLevel = tc.v, tc.logLevel
		got, err := o.Level()
		if err != nil || got != tc.want {
			t.Errorf("-v %d --log-level %s: level %v (%v), want %v", tc.v, tc.logLevel, got, err, tc.want)
		}
	}
}

// FuzzParse: any command line and FLANNELD_* environment either parses or
// returns an error, never panics; what parses validates without panicking,
// and every ignored klog flag it reports is one of klog's.
func FuzzParse(f *testing.F) {
	f.Add("--ip-blackhole-route\x00-v=3\x00--logtostderr", "FLANNELD_IP_MASQ=true")
	f.Add("-vmodule=x=2\x00--log_dir\x00/tmp", "FLANNELD_V=1\nFLANNELD_STDERRTHRESHOLD=ERROR")
	f.Add("--iface\x00eth0\x00stray", "FLANNELD_HEALTHZ_PORT=x")
	f.Fuzz(func(t *testing.T, args, environ string) {
		var argv []string
		if args != "" {
			argv = strings.Split(args, "\x00")
		}
		vars := map[string]string{}
		for _, line := range strings.Split(environ, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		o, _, err := Parse("flanneld", argv, env(vars))
		if err != nil {
			return
		}
		_ = o.Validate()
		_, _ = o.Level()
		for _, g := range o.Klog.Given {
			name, _, _ := strings.Cut(g, "=")
			if !klogFlagNames[name] {
				t.Fatalf("Klog.Given has %q, not a klog flag", g)
			}
		}
	})
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

// --udp-offload and --udp-queues come from the command line, then
// FLANNELD_*, then the WEFT_UDP_* variables they replaced.
func TestUDPFlagsAndLegacyEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		offload bool
		queues  int
		err     string
	}{
		{"defaults", nil, nil, true, 1, ""},
		{"flags", []string{"--udp-offload=false", "--udp-queues=4"}, nil, false, 4, ""},
		{"FLANNELD_", nil, map[string]string{"FLANNELD_UDP_OFFLOAD": "false", "FLANNELD_UDP_QUEUES": "2"}, false, 2, ""},
		{"legacy", nil, map[string]string{"WEFT_UDP_OFFLOAD": "off", "WEFT_UDP_QUEUES": "3"}, false, 3, ""},
		{"legacy on", nil, map[string]string{"WEFT_UDP_OFFLOAD": "on"}, true, 1, ""},
		{"flag wins over legacy", []string{"--udp-offload=true", "--udp-queues=1"}, map[string]string{"WEFT_UDP_OFFLOAD": "off", "WEFT_UDP_QUEUES": "3"}, true, 1, ""},
		{"FLANNELD_ wins over legacy", nil, map[string]string{"FLANNELD_UDP_QUEUES": "2", "WEFT_UDP_QUEUES": "3"}, true, 2, ""},
		{"legacy bad value", nil, map[string]string{"WEFT_UDP_OFFLOAD": "OFF"}, true, 1, "WEFT_UDP_OFFLOAD"},
		{"legacy bad number", nil, map[string]string{"WEFT_UDP_QUEUES": "two"}, true, 1, "WEFT_UDP_QUEUES"},
		{"too many queues", []string{"--udp-queues=17"}, nil, true, 17, "between 1 and 16"},
		{"no queues", nil, map[string]string{"WEFT_UDP_QUEUES": "0"}, true, 0, "between 1 and 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _, err := Parse("flanneld", tc.args, env(tc.env))
			if err == nil {
				err = o.Validate()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an error naming %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.UDPOffload != tc.offload || o.UDPQueues != tc.queues {
				t.Fatalf("UDPOffload %v, UDPQueues %d; want %v, %d", o.UDPOffload, o.UDPQueues, tc.offload, tc.queues)
			}
		})
	}
}
