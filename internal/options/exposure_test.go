package options

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// warnings parses args and env as the agent does and returns what Warn
// logs, one line each.
func warnings(t *testing.T, args []string, vars map[string]string) []string {
	t.Helper()
	o, _, err := Parse("flanneld", args, env(vars))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	o.Warn(slog.New(slog.NewTextHandler(&b, nil)))
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// The health listener warns exactly when it is on and bound beyond
// loopback; the flag and FLANNELD_HEALTHZ_IP both count.
func TestWarnHealthListenerOnTheNetwork(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		warn bool
	}{
		{"off by default", nil, nil, false},
		{"default address", []string{"--healthz-port=8081"}, nil, false},
		{"localhost", []string{"--healthz-port=8081", "--healthz-ip=localhost"}, nil, false},
		{"other loopback", []string{"--healthz-port=8081", "--healthz-ip=127.0.0.53"}, nil, false},
		{"ipv6 loopback", []string{"--healthz-port=8081", "--healthz-ip=::1"}, nil, false},
		{"flanneld's default", []string{"--healthz-port=8081", "--healthz-ip=0.0.0.0"}, nil, true},
		{"empty is every address", []string{"--healthz-port=8081", "--healthz-ip="}, nil, true},
		{"node IP from the env", nil, map[string]string{"FLANNELD_HEALTHZ_PORT": "8081", "FLANNELD_HEALTHZ_IP": "10.4.7.21"}, true},
		{"host name", []string{"--healthz-port=8081", "--healthz-ip=node1.example"}, nil, true},
		{"exposed but off", []string{"--healthz-ip=0.0.0.0"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkExposure(t, tc.args, tc.env, tc.warn, "reachable from the network", "--healthz-ip=127.0.0.1")
		})
	}
}

// checkExposure checks that the options warn about nothing, or (warn)
// exactly once, at WARN, with every one of says in the line.
func checkExposure(t *testing.T, args []string, vars map[string]string, warn bool, says ...string) {
	t.Helper()
	lines := warnings(t, args, vars)
	if !warn {
		if len(lines) != 0 {
			t.Fatalf("want no warning, got %q", lines)
		}
		return
	}
	ok := len(lines) == 1 && strings.Contains(lines[0], "level=WARN")
	for _, w := range says {
		ok = ok && strings.Contains(lines[0], w)
	}
	if !ok {
		t.Fatalf("want one WARN saying %q, got %q", says, lines)
	}
}

// A password on the command line warns (without the password); one from
// FLANNELD_ETCD_PASSWORD or a file does not.
func TestWarnPasswordOnTheCommandLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("fr0m-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		warn bool
	}{
		{"flag", []string{"--etcd-password=s3cret-pw"}, nil, true},
		{"flag wins over env", []string{"--etcd-password=s3cret-pw"}, map[string]string{"FLANNELD_ETCD_PASSWORD": "other"}, true},
		{"env", nil, map[string]string{"FLANNELD_ETCD_PASSWORD": "s3cret-pw"}, false},
		{"file", []string{"--etcd-password-file=" + file}, nil, false},
		{"file from env", nil, map[string]string{"FLANNELD_ETCD_PASSWORD_FILE": file}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := warnings(t, tc.args, tc.env)
			for _, l := range lines {
				if strings.Contains(l, "s3cret-pw") || strings.Contains(l, "fr0m-file") {
					t.Fatalf("password logged: %s", l)
				}
			}
			if !tc.warn {
				if len(lines) != 0 {
					t.Fatalf("want no warning, got %q", lines)
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") ||
				!strings.Contains(lines[0], "FLANNELD_ETCD_PASSWORD") || !strings.Contains(lines[0], "--etcd-password-file") {
				t.Fatalf("want one WARN pointing to FLANNELD_ETCD_PASSWORD and --etcd-password-file, got %q", lines)
			}
		})
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ content, want string }{
		{"pw", "pw"},
		{"pw\n", "pw"},
		{"pw\r\n", "pw"},
		{"pw\n\n", "pw\n"}, // one newline only: the rest is the password's
		{"pw ", "pw "},
	} {
		p := write("pw", tc.content)
		o, _, err := Parse("flanneld", []string{"--etcd-password-file", p}, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if o.EtcdPassword != tc.want || o.EtcdPasswordFile != p {
			t.Errorf("file %q: password %q from %q, want %q", tc.content, o.EtcdPassword, o.EtcdPasswordFile, tc.want)
		}
	}

	// Unreadable or empty: an error naming the file (and which flag or
	// variable gave it).
	missing := filepath.Join(dir, "missing")
	empty := write("empty", "\n")
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want []string
	}{
		{[]string{"--etcd-password-file=" + missing}, nil, []string{missing, "etcd-password-file", "no such file"}},
		{nil, map[string]string{"FLANNELD_ETCD_PASSWORD_FILE": missing}, []string{missing, "FLANNELD_ETCD_PASSWORD_FILE"}},
		{[]string{"--etcd-password-file=" + empty}, nil, []string{empty, "empty"}},
		{[]string{"--etcd-password-file=" + write("ok", "x"), "--etcd-password=y"}, nil, []string{"both given"}},
		{[]string{"--etcd-password=y"}, map[string]string{"FLANNELD_ETCD_PASSWORD_FILE": write("ok", "x")}, []string{"both given"}},
	} {
		_, _, err := Parse("flanneld", tc.args, env(tc.vars))
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q %v: error %v, want it to contain %q", tc.args, tc.vars, err, w)
			}
		}
	}

	// weft config and weft status register the etcd flags alone: the file
	// works there too.
	p := write("pw", "c0nfig\n")
	o, _, err := Parse("flanneld", nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("weft config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddEtcdFlags(fs)
	if err := fs.Parse([]string{"--etcd-password-file", p}); err != nil {
		t.Fatal(err)
	}
	if o.EtcdPassword != "c0nfig" {
		t.Errorf("weft config's --etcd-password-file: password %q", o.EtcdPassword)
	}
}

// The profiling listener is off by default, warns exactly when bound
// beyond loopback, and refuses an address that is not host:port.
func TestDebugAddr(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		warn bool
	}{
		{"off by default", nil, nil, false},
		{"loopback", []string{"--debug-addr=127.0.0.1:6060"}, nil, false},
		{"localhost from the env", nil, map[string]string{"FLANNELD_DEBUG_ADDR": "localhost:6060"}, false},
		{"every address", []string{"--debug-addr=:6060"}, nil, true},
		{"node IP", []string{"--debug-addr=10.4.7.21:6060"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkExposure(t, tc.args, tc.env, tc.warn, "/debug/pprof/", "--debug-addr=127.0.0.1:PORT")
		})
	}
	o, _, err := Parse("flanneld", []string{"--debug-addr=6060"}, env(nil))
	if err == nil {
		err = o.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "want host:port") {
		t.Fatalf("--debug-addr=6060: want an error asking for host:port, got %v", err)
	}
}
