package options

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// passwordFile is --etcd-password-file: setting it reads the file into
// EtcdPassword there and then, so that every command that registers the
// etcd flags (the agent, weft config, weft status) gets the password the
// same way, from the flag or from FLANNELD_ETCD_PASSWORD_FILE.
type passwordFile struct{ o *Options }

func (p passwordFile) String() string {
	if p.o == nil { // flag.PrintDefaults asks a zero value
		return ""
	}
	return p.o.EtcdPasswordFile
}

func (p passwordFile) Set(path string) error {
	pw, err := ReadPasswordFile(path)
	if err != nil {
		return err
	}
	p.o.EtcdPasswordFile, p.o.EtcdPassword = path, pw
	return nil
}

// ReadPasswordFile reads an etcd password from path. One trailing newline
// (what `echo` and editors leave) is not part of it; anything else is, so
// a password may end in spaces.
func ReadPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read the etcd password file %s: %w", path, err)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("the etcd password file %s is empty", path)
	}
	return s, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Warn logs, once at start, what in these options exposes the host: a
// health or profiling listener other hosts can reach, and an etcd password on the
// command line. Neither stops the agent (flanneld's setups rely on both),
// but the operator should know.
func (o *Options) Warn(log *slog.Logger) {
	if o.HealthzPort > 0 && !loopbackHost(o.HealthzIP) {
		addr := net.JoinHostPort(o.HealthzIP, strconv.Itoa(o.HealthzPort))
		log.Warn("the health listener is reachable from the network: whoever reaches it can read /metrics and the agent's page (GET only, no secrets); --healthz-ip=127.0.0.1 keeps it on this host",
			"addr", addr)
	}
	if host, _, err := net.SplitHostPort(o.DebugAddr); err == nil && !loopbackHost(host) {
		log.Warn("the profiling listener is reachable from the network: whoever reaches it can read the agent's memory and stacks through /debug/pprof/; --debug-addr=127.0.0.1:PORT keeps it on this host",
			"addr", o.DebugAddr)
	}
	if o.passwordOnCommandLine {
		log.Warn("the etcd password is on the command line, where every user of this host can read it (/proc/<pid>/cmdline); pass it in FLANNELD_ETCD_PASSWORD or --etcd-password-file instead")
	}
}

// loopbackHost reports whether --healthz-ip keeps the listener on this
// host. An empty value listens on every address; a host name other than
// localhost may resolve to anything, so it counts as exposed.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
