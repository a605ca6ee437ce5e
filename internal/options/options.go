// Package options holds the agent's command-line surface. It is flanneld's,
// flag for flag, so that existing systemd units, supervisor programs and
// DaemonSets keep working when flanneld is swapped for weft: every flag
// also reads FLANNELD_<NAME> from the environment (upper case, '-' → '_'),
// and the command line wins over the environment, as in flanneld.
package options

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"
)

// Options configures one agent.
type Options struct {
	EtcdEndpoints string // comma-separated URLs
	EtcdPrefix    string
	EtcdKeyfile   string
	EtcdCertfile  string
	EtcdCAFile    string
	EtcdUsername  string
	EtcdPassword  string // never logged; see LogValue
	// EtcdPasswordFile is where --etcd-password-file read EtcdPassword
	// from (weft's: flanneld has only the flag and its variable).
	EtcdPasswordFile string

	PublicIP      string
	PublicIPv6    string
	Iface         []string
	IfaceRegex    []string
	IfaceCanReach string

	SubnetFile               string
	StateDir                 string // weft: what must survive reboots (the vxlan VTEP MAC)
	SubnetLeaseRenewMargin   int    // minutes, 1..1439
	IPMasq                   bool
	IPMasqFullyRandomDisable bool
	IPTablesForwardRules     bool
	HealthzIP                string
	HealthzPort              int
	// DebugAddr is where the agent serves Go's profiles (/debug/pprof/),
	// host:port; empty (the default) serves none. weft's: flanneld has no
	// profiling endpoint.
	DebugAddr string
	// UDPOffload lets the udp backend take the offloads the kernel grants
	// (TSO/USO on flannel0, UDP GSO/GRO on its socket); false runs the
	// batched path of one packet per read. UDPQueues is how many queues of
	// flannel0 it reads, 1 to 16. Both are weft's.
	UDPOffload     bool
	UDPQueues      int
	IPTablesResync int // seconds
	// IPBlackholeRoute keeps a blackhole route for the own subnet, as
	// flanneld's --ip-blackhole-route.
	IPBlackholeRoute bool
	ReconcilePeriod  time.Duration

	// RaiseNeighGCThresh lets the agent raise the kernel's neighbour-table
	// thresholds (net.ipv4.neigh.default.gc_thresh1/2/3) to what this host
	// needs; never lowers them. Off by default: the kernel is the
	// operator's.
	RaiseNeighGCThresh bool
	// ProcRoot is where the agent reads sysctls (<ProcRoot>/sys) and the
	// neighbour tables' statistics (<ProcRoot>/net/stat, else /proc's): the
	// host's /proc, a container's mount of the host's /proc/sys/net, or a
	// test's fake tree.
	ProcRoot string
	// CNIConfDir is the runtime's CNI config directory, which the agent
	// watches for another network's config sorting before its own
	// (internal/cni/confdir); "" turns the check off.
	CNIConfDir string

	// Kubernetes mode (--kube-subnet-mgr): the node's spec.podCIDR is its
	// subnet and peers come from Node annotations instead of etcd.
	KubeSubnetMgr             bool
	KubeAPIURL                string
	KubeconfigFile            string
	KubeAnnotationPrefix      string
	NetConfigPath             string
	SetNodeNetworkUnavailable bool

	LogFormat string // text or json
	LogLevel  string // debug, info, warn, error
	Verbosity int    // flanneld's -v; ≥1 turns on debug logging
	Version   bool

	// passwordOnCommandLine is whether --etcd-password came from the
	// command line (rather than its FLANNELD_ variable), which every user
	// of the host can read in /proc; see Warn.
	passwordOnCommandLine bool

	// Klog holds klog's other flags, which flannel's units and manifests
	// may pass; weft accepts them and otherwise ignores them.
	Klog KlogFlags
}

// KlogFlags are klog's logging flags besides -v. flanneld accepts -vmodule
// and -log_backtrace_at (it copies them from klog) and forces
// -logtostderr; older units and glog-era manifests also pass -logtostderr,
// -alsologtostderr, -log_dir and -stderrthreshold. weft logs through
// log/slog to stderr only, so none of them changes anything: they are
// accepted so that such command lines keep working, and the agent logs at
// debug level which ones it ignored.
type KlogFlags struct {
	VModule         string
	LogBacktraceAt  string
	LogToStderr     bool
	AlsoLogToStderr bool
	LogDir          string
	StderrThreshold string
	// Given are the flags above that the command line or a FLANNELD_*
	// variable set, as "name=value", in flag-name order.
	Given []string
}

// klogFlagNames are the flags of KlogFlags.
var klogFlagNames = map[string]bool{
	"vmodule": true, "log_backtrace_at": true, "logtostderr": true,
	"alsologtostderr": true, "log_dir": true, "stderrthreshold": true,
}

// Defaults are flanneld's, but for HealthzIP: flanneld binds 0.0.0.0,
// weft keeps /metrics and the page on the host unless told otherwise
// (Warn says so when told).
func Defaults() Options {
	return Options{
		EtcdEndpoints:             "http://127.0.0.1:4001,http://127.0.0.1:2379",
		EtcdPrefix:                "/coreos.com/network",
		SubnetFile:                "/run/flannel/subnet.env",
		StateDir:                  "/var/lib/weft",
		SubnetLeaseRenewMargin:    60,
		HealthzIP:                 "127.0.0.1",
		IPTablesResync:            5,
		IPTablesForwardRules:      true,
		KubeAnnotationPrefix:      "flannel.alpha.coreos.com",
		NetConfigPath:             "/etc/kube-flannel/net-conf.json",
		SetNodeNetworkUnavailable: true,
		ReconcilePeriod:           10 * time.Second,
		UDPOffload:                true,
		UDPQueues:                 1,
		ProcRoot:                  "/proc",
		CNIConfDir:                "/etc/cni/net.d",
		LogFormat:                 "text",
		LogLevel:                  "info",
	}
}

// stringList is a repeatable string flag (--iface a --iface b).
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// AddFlags registers every agent flag on fs, bound to o.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.EtcdEndpoints, "etcd-endpoints", o.EtcdEndpoints, "comma-separated etcd endpoints")
	fs.StringVar(&o.EtcdPrefix, "etcd-prefix", o.EtcdPrefix, "etcd prefix of the network config and leases")
	fs.StringVar(&o.EtcdKeyfile, "etcd-keyfile", o.EtcdKeyfile, "TLS client key for etcd")
	fs.StringVar(&o.EtcdCertfile, "etcd-certfile", o.EtcdCertfile, "TLS client certificate for etcd")
	fs.StringVar(&o.EtcdCAFile, "etcd-cafile", o.EtcdCAFile, "CA bundle that signed etcd's server certificate")
	fs.StringVar(&o.EtcdUsername, "etcd-username", o.EtcdUsername, "username for etcd basic auth")
	fs.StringVar(&o.EtcdPassword, "etcd-password", o.EtcdPassword, "password for etcd basic auth (every user of the host can read a command line: prefer FLANNELD_ETCD_PASSWORD or --etcd-password-file)")
	fs.Var(passwordFile{o}, "etcd-password-file", "file holding the password for etcd basic auth (one trailing newline is ignored)")
	fs.StringVar(&o.PublicIP, "public-ip", o.PublicIP, "IP peers use to reach this host (default: the interface's address)")
	fs.StringVar(&o.PublicIPv6, "public-ipv6", o.PublicIPv6, "IPv6 address peers use to reach this host when the config enables IPv6 (default: the interface's global IPv6 address)")
	fs.Var((*stringList)(&o.Iface), "iface", "interface (name or IP) for traffic between hosts; repeatable, first match wins")
	fs.Var((*stringList)(&o.IfaceRegex), "iface-regex", "regex matched against interface IPs, then names; repeatable")
	fs.StringVar(&o.IfaceCanReach, "iface-can-reach", o.IfaceCanReach, "pick the interface that routes to this IP")
	fs.StringVar(&o.SubnetFile, "subnet-file", o.SubnetFile, "where to write subnet.env")
	fs.StringVar(&o.StateDir, "state-dir", o.StateDir, "directory for state that must survive reboots, such as the vxlan VTEP MAC (subnet.env lives on tmpfs)")
	fs.IntVar(&o.SubnetLeaseRenewMargin, "subnet-lease-renew-margin", o.SubnetLeaseRenewMargin, "renew the lease this many minutes before it expires (1-1439)")
	fs.BoolVar(&o.IPMasq, "ip-masq", o.IPMasq, "masquerade traffic leaving the cluster network")
	fs.BoolVar(&o.IPMasqFullyRandomDisable, "ip-masq-fully-random-disable", o.IPMasqFullyRandomDisable, "do not use --random-fully for masquerading")
	fs.BoolVar(&o.IPTablesForwardRules, "iptables-forward-rules", o.IPTablesForwardRules, "accept traffic to and from the cluster network in FORWARD")
	fs.BoolVar(&o.KubeSubnetMgr, "kube-subnet-mgr", o.KubeSubnetMgr, "take the subnet from the Node's spec.podCIDR and peers from Node annotations (Kubernetes API instead of etcd)")
	fs.StringVar(&o.KubeAPIURL, "kube-api-url", o.KubeAPIURL, "Kubernetes API server URL (default: from the kubeconfig or in-cluster)")
	fs.StringVar(&o.KubeconfigFile, "kubeconfig-file", o.KubeconfigFile, "kubeconfig file (default: in-cluster config)")
	fs.StringVar(&o.KubeAnnotationPrefix, "kube-annotation-prefix", o.KubeAnnotationPrefix, "prefix of the Node annotations weft reads and writes")
	fs.StringVar(&o.NetConfigPath, "net-config-path", o.NetConfigPath, "network config file in Kubernetes mode")
	fs.BoolVar(&o.SetNodeNetworkUnavailable, "set-node-network-unavailable", o.SetNodeNetworkUnavailable, "set the Node's NetworkUnavailable condition to False once the network is up")
	fs.StringVar(&o.HealthzIP, "healthz-ip", o.HealthzIP, "address for /healthz, /readyz, /metrics and the page (flanneld's default is 0.0.0.0; weft's keeps them on the host)")
	fs.IntVar(&o.HealthzPort, "healthz-port", o.HealthzPort, "port for /healthz and /readyz (0 disables)")
	fs.StringVar(&o.DebugAddr, "debug-addr", o.DebugAddr, "host:port to serve Go's profiles on (/debug/pprof/), e.g. 127.0.0.1:6060; empty (the default) serves none. The profiles show the agent's memory: keep it on loopback")
	fs.IntVar(&o.IPTablesResync, "iptables-resync", o.IPTablesResync, "seconds between traffic-rule resyncs (and blackhole-route checks)")
	fs.BoolVar(&o.IPBlackholeRoute, "ip-blackhole-route", o.IPBlackholeRoute, "keep a blackhole route for this host's subnet, so traffic to its unassigned addresses is dropped here rather than sent along the default route")
	fs.DurationVar(&o.ReconcilePeriod, "reconcile-period", o.ReconcilePeriod, "how often the kernel state is compared with the desired state (deletions are also repaired as they happen)")
	fs.BoolVar(&o.UDPOffload, "udp-offload", o.UDPOffload, "udp backend: take the offloads the kernel grants (TSO/USO on flannel0, UDP GSO/GRO on the socket); false runs the batched path of one packet per read (also WEFT_UDP_OFFLOAD=on|off)")
	fs.IntVar(&o.UDPQueues, "udp-queues", o.UDPQueues, "udp backend: queues of flannel0 to read, one goroutine each, 1-16 (also WEFT_UDP_QUEUES)")
	fs.BoolVar(&o.RaiseNeighGCThresh, "raise-neigh-gc-thresh", o.RaiseNeighGCThresh, "raise net.ipv4.neigh.default.gc_thresh1/2/3 to fit this host's peers and pods (never lowers them; logs old -> new)")
	fs.StringVar(&o.ProcRoot, "proc-root", o.ProcRoot, "the kernel's /proc: sysctls are read from <dir>/sys, neighbour-table statistics from <dir>/net/stat if it exists (else /proc/net/stat)")
	fs.StringVar(&o.CNIConfDir, "cni-conf-dir", o.CNIConfDir, "the container runtime's CNI config directory: warn while another network's config there sorts before weft's (\"\" disables)")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "log format: text or json")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "log level: debug, info, warn or error")
	fs.IntVar(&o.Verbosity, "v", o.Verbosity, "klog-style verbosity, as flanneld's: 1 or more logs at debug level (and passes N to the Kubernetes client's logs)")
	fs.BoolVar(&o.Version, "version", o.Version, "print the version and exit")
	const ignored = " (klog's; accepted for flanneld command lines, no effect: weft logs to stderr)"
	fs.StringVar(&o.Klog.VModule, "vmodule", o.Klog.VModule, "per-file verbosity"+ignored)
	fs.StringVar(&o.Klog.LogBacktraceAt, "log_backtrace_at", o.Klog.LogBacktraceAt, "file:line that logs a stack trace"+ignored)
	fs.BoolVar(&o.Klog.LogToStderr, "logtostderr", o.Klog.LogToStderr, "log to stderr"+ignored)
	fs.BoolVar(&o.Klog.AlsoLogToStderr, "alsologtostderr", o.Klog.AlsoLogToStderr, "log to stderr as well as files"+ignored)
	fs.StringVar(&o.Klog.LogDir, "log_dir", o.Klog.LogDir, "directory for log files"+ignored)
	fs.StringVar(&o.Klog.StderrThreshold, "stderrthreshold", o.Klog.StderrThreshold, "severity logged to stderr"+ignored)
}

// usageHeader introduces the agent's flags in Parse's usage.
const usageHeader = `Usage: %s [flags]

Runs weft's host agent. The flags are flanneld's; each one can also be given
as a FLANNELD_<NAME> environment variable (upper case, '-' as '_'), and the
command line wins. Single or double dash both work; boolean flags take
--flag=false to turn off.

Flags:
`

// Parse parses args (without the program name) into a fresh Options,
// filling flags the command line did not set from FLANNELD_* variables.
func Parse(name string, args []string, getenv func(string) string) (Options, *flag.FlagSet, error) {
	o := Defaults()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The caller reports errors and prints the usage (see cmdline.Check),
	// once and on the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), usageHeader, name)
		fs.PrintDefaults()
	}
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, fs, err
	}
	if fs.NArg() > 0 {
		return o, fs, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.passwordOnCommandLine = isSet(fs, "etcd-password")
	if err := applyEnv(fs, getenv); err != nil {
		return o, fs, err
	}
	if err := applyLegacyEnv(fs, getenv); err != nil {
		return o, fs, err
	}
	if isSet(fs, "etcd-password") && isSet(fs, "etcd-password-file") {
		return o, fs, errors.New("--etcd-password and --etcd-password-file (or FLANNELD_ETCD_PASSWORD and FLANNELD_ETCD_PASSWORD_FILE) both given: use one")
	}
	fs.Visit(func(f *flag.Flag) {
		if klogFlagNames[f.Name] {
			o.Klog.Given = append(o.Klog.Given, f.Name+"="+f.Value.String())
		}
	})
	return o, fs, nil
}

// legacyEnv are the variables that set weft's udp flags before they were
// flags; documented, so they keep working, below the command line and
// FLANNELD_*. value turns one's value into the flag's.
var legacyEnv = []struct {
	flag, env string
	value     func(string) (string, bool)
}{
	{"udp-offload", "WEFT_UDP_OFFLOAD", func(v string) (string, bool) {
		switch v {
		case "on":
			return "true", true
		case "off":
			return "false", true
		}
		return "", false
	}},
	{"udp-queues", "WEFT_UDP_QUEUES", func(v string) (string, bool) { return v, true }},
}

// applyLegacyEnv sets the flags of legacyEnv that neither the command line
// nor their FLANNELD_* variable set.
func applyLegacyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	for _, l := range legacyEnv {
		v := getenv(l.env)
		if v == "" || isSet(fs, l.flag) {
			continue
		}
		fv, ok := l.value(v)
		if ok {
			ok = fs.Set(l.flag, fv) == nil
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s=%q: not a value of --%s", l.env, v, l.flag))
		}
	}
	return errors.Join(errs...)
}

// EnvName is the environment variable that feeds a flag.
func EnvName(flagName string) string {
	return "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "version" {
			return
		}
		v := getenv(EnvName(f.Name))
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
		}
	})
	return errors.Join(errs...)
}

// Validate checks values that flag parsing cannot.
func (o *Options) Validate() error {
	var errs []error
	if o.SubnetLeaseRenewMargin < 1 || o.SubnetLeaseRenewMargin > 1439 {
		errs = append(errs, fmt.Errorf("--subnet-lease-renew-margin=%d: must be between 1 and 1439 minutes (the lease lasts 24 h)", o.SubnetLeaseRenewMargin))
	}
	if o.HealthzPort < 0 || o.HealthzPort > 65535 {
		errs = append(errs, fmt.Errorf("--healthz-port=%d: not a port", o.HealthzPort))
	}
	if o.UDPQueues < 1 || o.UDPQueues > 16 {
		errs = append(errs, fmt.Errorf("--udp-queues=%d: must be between 1 and 16", o.UDPQueues))
	}
	if o.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(o.DebugAddr); err != nil {
			errs = append(errs, fmt.Errorf("--debug-addr=%q: want host:port, e.g. 127.0.0.1:6060: %w", o.DebugAddr, err))
		}
	}
	if o.IPTablesResync < 1 {
		errs = append(errs, fmt.Errorf("--iptables-resync=%d: must be at least 1 second", o.IPTablesResync))
	}
	if o.ReconcilePeriod < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--reconcile-period=%v: must be at least 100ms", o.ReconcilePeriod))
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format=%q: must be text or json", o.LogFormat))
	}
	if _, err := o.Level(); err != nil {
		errs = append(errs, err)
	}
	if (o.EtcdKeyfile == "") != (o.EtcdCertfile == "") {
		errs = append(errs, errors.New("--etcd-keyfile and --etcd-certfile must be given together"))
	}
	if !o.KubeSubnetMgr && strings.TrimSpace(o.EtcdEndpoints) == "" {
		errs = append(errs, errors.New("--etcd-endpoints is empty"))
	}
	return errors.Join(errs...)
}

// Level is the slog level the options ask for. klog's -v N (flanneld's
// verbosity) maps onto slog's levels below info: weft's own debug lines
// are all at slog.LevelDebug, which every N ≥ 1 shows, since klog's levels
// 1 to 4 are what it calls debugging detail. The Kubernetes client logs
// its klog V(N) lines at slog level -N (DEBUG-2 for V(6), ...), so a
// larger N also lowers the level far enough to show them.
func (o *Options) Level() (slog.Level, error) {
	if o.Verbosity > 0 {
		return min(slog.LevelDebug, slog.Level(-o.Verbosity)), nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level=%q: must be debug, info, warn or error", o.LogLevel)
	}
	return l, nil
}

// Endpoints splits --etcd-endpoints.
func (o *Options) Endpoints() []string {
	var out []string
	for _, e := range strings.Split(o.EtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// LogValue lets the options be logged whole without leaking the etcd
// password.
func (o Options) LogValue() slog.Value {
	pw := ""
	if o.EtcdPassword != "" {
		pw = "<redacted>"
	}
	if o.KubeSubnetMgr {
		return slog.GroupValue(
			slog.Bool("kube-subnet-mgr", true),
			slog.String("kubeconfig-file", o.KubeconfigFile),
			slog.String("kube-api-url", o.KubeAPIURL),
			slog.String("kube-annotation-prefix", o.KubeAnnotationPrefix),
			slog.String("net-config-path", o.NetConfigPath),
			slog.String("public-ip", o.PublicIP),
			slog.Any("iface", o.Iface),
			slog.String("subnet-file", o.SubnetFile),
			slog.Bool("ip-masq", o.IPMasq),
			slog.Bool("ip-blackhole-route", o.IPBlackholeRoute),
			slog.String("healthz-ip", o.HealthzIP),
			slog.Int("healthz-port", o.HealthzPort),
			slog.Bool("raise-neigh-gc-thresh", o.RaiseNeighGCThresh),
		)
	}
	return slog.GroupValue(
		slog.String("etcd-endpoints", o.EtcdEndpoints),
		slog.String("etcd-prefix", o.EtcdPrefix),
		slog.String("etcd-certfile", o.EtcdCertfile),
		slog.String("etcd-username", o.EtcdUsername),
		slog.String("etcd-password", pw),
		slog.String("etcd-password-file", o.EtcdPasswordFile),
		slog.String("public-ip", o.PublicIP),
		slog.Any("iface", o.Iface),
		slog.Any("iface-regex", o.IfaceRegex),
		slog.String("iface-can-reach", o.IfaceCanReach),
		slog.String("subnet-file", o.SubnetFile),
		slog.Int("subnet-lease-renew-margin", o.SubnetLeaseRenewMargin),
		slog.Bool("ip-masq", o.IPMasq),
		slog.Bool("ip-blackhole-route", o.IPBlackholeRoute),
		slog.String("healthz-ip", o.HealthzIP),
		slog.Int("healthz-port", o.HealthzPort),
		slog.Bool("raise-neigh-gc-thresh", o.RaiseNeighGCThresh),
	)
}
