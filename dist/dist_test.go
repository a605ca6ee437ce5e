package dist

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/dockeropts"
	"github.com/weftnet/weft/internal/kernel"
	"github.com/weftnet/weft/internal/options"
)

const (
	weftPath  = "/usr/local/bin/weft"
	agentPath = "/usr/local/bin/weft-agent"
)

// entry is one key=value of an INI-style file.
type entry struct{ section, key, value string }

// parseINI reads systemd and supervisord files: [section] headers,
// key=value lines, comments starting with # or ;.
func parseINI(t *testing.T, path string) []entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []entry
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: %q is not key=value", path, n, line)
			}
			out = append(out, entry{section, strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	return out
}

func values(es []entry, section, key string) []string {
	var out []string
	for _, e := range es {
		if e.section == section && e.key == key {
			out = append(out, e.value)
		}
	}
	return out
}

func one(t *testing.T, es []entry, section, key string) string {
	t.Helper()
	v := values(es, section, key)
	if len(v) != 1 {
		t.Fatalf("[%s] %s: %d values %q, want one", section, key, len(v), v)
	}
	return v[0]
}

// agentArgs checks that a command line runs the agent binary with flags
// the agent accepts, and returns them parsed.
func agentArgs(t *testing.T, cmd string, env map[string]string) options.Options {
	t.Helper()
	f := strings.Fields(cmd)
	if len(f) < 1 || f[0] != agentPath {
		t.Fatalf("command %q does not run %s", cmd, agentPath)
	}
	var args []string
	for _, a := range f[1:] {
		if !strings.HasPrefix(a, "$") {
			args = append(args, a)
		}
	}
	o, _, err := options.Parse("weft agent", args, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the agent rejects %q: %v", args, err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("the agent rejects %q: %v", args, err)
	}
	return o
}

// known are the keys these files may use, by section; a misspelt key is
// silently ignored by systemd, so the test refuses any other.
var known = map[string][]string{
	"Unit":    {"Description", "Documentation", "Wants", "Requires", "After", "Before"},
	"Service": {"Type", "EnvironmentFile", "ExecStart", "ExecStartPost", "Restart", "RestartSec"},
	"Install": {"WantedBy"},
}

func checkKnown(t *testing.T, name string, es []entry) {
	t.Helper()
	for _, e := range es {
		if !slices.Contains(known[e.section], e.key) {
			t.Errorf("%s: [%s] %s is not a key this check knows; add it to known if systemd does", name, e.section, e.key)
		}
	}
}

func TestWeftService(t *testing.T) {
	es := parseINI(t, "weft.service")
	checkKnown(t, "weft.service", es)
	if v := one(t, es, "Service", "Type"); v != "notify" {
		t.Errorf("Type=%s, want notify (the agent sends READY=1)", v)
	}
	if v := one(t, es, "Unit", "Before"); !slices.Contains(strings.Fields(v), "docker.service") {
		t.Errorf("Before=%s lacks docker.service", v)
	}
	after := strings.Fields(one(t, es, "Unit", "After"))
	for _, want := range []string{"network-online.target", "etcd.service"} {
		if !slices.Contains(after, want) {
			t.Errorf("After=%q lacks %s", after, want)
		}
	}
	if v := one(t, es, "Service", "Restart"); v != "on-failure" {
		t.Errorf("Restart=%s, want on-failure", v)
	}
	envFiles := values(es, "Service", "EnvironmentFile")
	for _, want := range []string{"-/etc/default/weft", "-/etc/sysconfig/weft"} {
		if !slices.Contains(envFiles, want) {
			t.Errorf("EnvironmentFile=%q lacks %s", envFiles, want)
		}
	}
	agentArgs(t, one(t, es, "Service", "ExecStart"), nil)

	post := strings.Fields(one(t, es, "Service", "ExecStartPost"))
	if len(post) < 2 || post[0] != weftPath || post[1] != "docker-opts" {
		t.Fatalf("ExecStartPost=%q does not run weft docker-opts", post)
	}
	o, err := dockeropts.ParseArgs(post[2:], nil)
	if err != nil {
		t.Fatalf("ExecStartPost: docker-opts rejects %q: %v", post[2:], err)
	}
	if !o.Combined || o.Individual || o.OutputFile != dockeropts.DefaultOutputFile {
		t.Errorf("ExecStartPost docker-opts options %+v: want -c writing %s, which docker-weft.conf reads", o, dockeropts.DefaultOutputFile)
	}
}

// TestWeftEnv: every variable in the sample EnvironmentFile, commented out
// or not, is one the agent reads, and the active ones parse.
func TestWeftEnv(t *testing.T) {
	data, err := os.ReadFile("weft.env")
	if err != nil {
		t.Fatal(err)
	}
	envNames := map[string]bool{"WEFT_ARGS": true}
	o := options.Defaults()
	fs := flagSet(&o)
	for _, name := range fs {
		envNames[options.EnvName(name)] = true
	}
	active := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		commented := strings.HasPrefix(line, "#")
		line = strings.TrimPrefix(line, "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(k, " \t") {
			continue // prose
		}
		if !envNames[k] {
			t.Errorf("weft.env sets %s, which weft does not read", k)
		}
		if !commented {
			active[k] = v
		}
	}
	if len(active) == 0 {
		t.Fatal("no active variables found")
	}
	got, _, err := options.Parse("weft agent", nil, func(k string) string { return active[k] })
	if err != nil {
		t.Fatalf("the agent rejects weft.env: %v", err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the agent rejects weft.env: %v", err)
	}
	if got.SubnetFile != dockeropts.DefaultSubnetFile {
		t.Errorf("weft.env moves the subnet file to %s; docker-opts would follow via FLANNELD_SUBNET_FILE, but keep the sample on the default", got.SubnetFile)
	}
}

func TestDockerDropIn(t *testing.T) {
	es := parseINI(t, "docker-weft.conf")
	checkKnown(t, "docker-weft.conf", es)
	for _, key := range []string{"Wants", "After"} {
		if v := one(t, es, "Unit", key); v != "weft.service" {
			t.Errorf("%s=%s, want weft.service", key, v)
		}
	}
	if v := one(t, es, "Service", "EnvironmentFile"); v != dockeropts.DefaultOutputFile {
		t.Errorf("EnvironmentFile=%s, want %s (what weft.service's docker-opts writes)", v, dockeropts.DefaultOutputFile)
	}
	exec := values(es, "Service", "ExecStart")
	if len(exec) != 2 || exec[0] != "" {
		t.Fatalf("ExecStart=%q: want an empty ExecStart= clearing docker's, then one command", exec)
	}
	f := strings.Fields(exec[1])
	if f[0] != "/usr/bin/dockerd" || f[len(f)-1] != "$"+dockeropts.DefaultCombinedKey {
		t.Errorf("ExecStart=%s: want dockerd ... $%s", exec[1], dockeropts.DefaultCombinedKey)
	}
}

func TestSupervisorProgram(t *testing.T) {
	es := parseINI(t, "supervisor-weft.ini")
	o := agentArgs(t, one(t, es, "program:weft", "command"), nil)
	if o.Endpoints() == nil || o.EtcdCAFile == "" || o.SubnetFile != dockeropts.DefaultSubnetFile {
		t.Errorf("command parses to %+v: want the seed's etcd TLS setup and the default subnet file", o)
	}
	if v := one(t, es, "program:weft", "stopsignal"); v != "TERM" {
		t.Errorf("stopsignal=%s, want TERM (the agent's clean stop)", v)
	}
	if v := one(t, es, "program:weft", "exitcodes"); v != "0" {
		t.Errorf("exitcodes=%s, want 0", v)
	}
}

func TestRtProtos(t *testing.T) {
	data, err := os.ReadFile("rt_protos.d/weft.conf")
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, strings.Fields(line))
		}
	}
	want := []string{"87", "weft"}
	if len(lines) != 1 || !slices.Equal(lines[0], want) {
		t.Fatalf("entries %q, want exactly %q", lines, want)
	}
	if kernel.ProtoWeft != 87 {
		t.Errorf("weft tags routes with proto %d, the file names 87", kernel.ProtoWeft)
	}
}

// TestSystemdVerify has systemd itself check the unit and the drop-in, with
// the binaries pointed at an executable that exists here.
func TestSystemdVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// CI installs systemd (.ci/run), so there this check always runs.
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze not installed (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not installed; the key checks above still ran")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	install := func(src, dst string, replace ...string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer(replace...).Replace(string(data))
		p := filepath.Join(dir, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// agentPath first: weftPath is a prefix of it.
	unit := install("weft.service", "weft.service", agentPath, self, weftPath, self)
	install("docker-weft.conf", "docker.service.d/weft.conf", "/usr/bin/dockerd", self)
	docker := filepath.Join(dir, "docker.service")
	if err := os.WriteFile(docker, []byte("[Unit]\nDescription=stand-in for docker.service\n[Service]\nType=notify\nExecStart=/nonexistent/dockerd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{unit, docker} {
		cmd := exec.Command(sa, "verify", "--man=no", u)
		// The trailing ":" keeps the default search path after dir, where
		// the drop-in directory is found.
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(u), err, out)
		}
	}
}
