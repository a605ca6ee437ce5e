package dockeropts

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Subnet files as weft (and flannel) write them, and as seed 000 has one.
const (
	envFlannel = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	envSeed000 = "FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"
	envDual    = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	envNoMasq  = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n"
)

// TestGolden byte-compares the output with what flannel's
// mk-docker-opts.sh writes for the same subnet file, flags and environment.
// Each want was derived by walking the script by hand (see the package
// comment's contract), never by running this code: the script sorts the
// DOCKER_OPT_* names, writes NAME="VALUE" lines, then KEY="<existing +
// space if non-empty>< space+value for each option>".
func TestGolden(t *testing.T) {
	cases := []struct {
		name    string
		subnet  string
		args    []string
		environ []string
		want    string
	}{{
		name:   "no flags writes both",
		subnet: envFlannel,
		want: `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=false"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"
`,
	}, {
		name:   "-i -c is the same as no flags",
		subnet: envFlannel,
		args:   []string{"-i", "-c"},
		want: `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=false"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"
`,
	}, {
		name:   "seed 000 with -c: ip-masq false becomes docker --ip-masq=true",
		subnet: envSeed000,
		args:   []string{"-c"},
		want:   `DOCKER_OPTS=" --bip=172.7.21.1/24 --ip-masq=true --mtu=1500"` + "\n",
	}, {
		name:   "-i only",
		subnet: envSeed000,
		args:   []string{"-i"},
		want: `DOCKER_OPT_BIP="--bip=172.7.21.1/24"
DOCKER_OPT_IPMASQ="--ip-masq=true"
DOCKER_OPT_MTU="--mtu=1500"
`,
	}, {
		name:   "-m leaves out ip-masq",
		subnet: envFlannel,
		args:   []string{"-m"},
		want: `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --bip=10.244.1.1/24 --mtu=1450"
`,
	}, {
		name:    "existing DOCKER_OPTS is kept in front, with the script's double space",
		subnet:  envFlannel,
		args:    []string{"-c"},
		environ: []string{"DOCKER_OPTS=-H fd:// --log-level=warn"},
		want:    `DOCKER_OPTS="-H fd:// --log-level=warn  --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"` + "\n",
	}, {
		name:    "empty DOCKER_OPTS counts as unset",
		subnet:  envFlannel,
		args:    []string{"-c"},
		environ: []string{"DOCKER_OPTS="},
		want:    `DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"` + "\n",
	}, {
		name:    "-k names the combined variable and its seed",
		subnet:  envFlannel,
		args:    []string{"-k", "DOCKER_NETWORK_OPTIONS", "-c"},
		environ: []string{"DOCKER_OPTS=-H fd://", "DOCKER_NETWORK_OPTIONS=--iptables=true"},
		want:    `DOCKER_NETWORK_OPTIONS="--iptables=true  --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"` + "\n",
	}, {
		name:    "DOCKER_OPT_ variables from the environment join in name order",
		subnet:  envFlannel,
		environ: []string{"DOCKER_OPT_DNS=--dns=10.96.0.10", "DOCKER_OPT_A1=--a1", "DOCKER_OPT_A=--a", "PATH=/usr/bin"},
		want: `DOCKER_OPT_A="--a"
DOCKER_OPT_A1="--a1"
DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_DNS="--dns=10.96.0.10"
DOCKER_OPT_IPMASQ="--ip-masq=false"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --a --a1 --bip=10.244.1.1/24 --dns=10.96.0.10 --ip-masq=false --mtu=1450"
`,
	}, {
		name:    "the file overrides the environment, which fills what the file lacks",
		subnet:  "FLANNEL_MTU=1450\n",
		args:    []string{"-c"},
		environ: []string{"FLANNEL_MTU=9000", "FLANNEL_SUBNET=10.9.3.1/24", "FLANNEL_IPMASQ=false", "DOCKER_OPT_BIP=--bip=1.2.3.4/8"},
		want:    `DOCKER_OPTS=" --bip=10.9.3.1/24 --ip-masq=true --mtu=1450"` + "\n",
	}, {
		name:   "IPv6 subnet: --ipv6 and --fixed-cidr-v6 (no mk-docker-opts equivalent)",
		subnet: envDual,
		want: `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_FIXED_CIDR_V6="--fixed-cidr-v6=2001:cafe:42::/64"
DOCKER_OPT_IPMASQ="--ip-masq=false"
DOCKER_OPT_IPV6="--ipv6"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --bip=10.244.1.1/24 --fixed-cidr-v6=2001:cafe:42::/64 --ip-masq=false --ipv6 --mtu=1450"
`,
	}, {
		name:   "no FLANNEL_IPMASQ, no ip-masq option",
		subnet: envNoMasq,
		args:   []string{"-ic"},
		want: `DOCKER_OPT_BIP="--bip=10.244.1.1/24"
DOCKER_OPT_MTU="--mtu=1450"
DOCKER_OPTS=" --bip=10.244.1.1/24 --mtu=1450"
`,
	}, {
		name:   "comments, export and quotes in the subnet file read as sh would",
		subnet: "# written by hand\nexport FLANNEL_SUBNET=\"10.244.1.1/24\"\n\nFLANNEL_MTU='1450'\nFLANNEL_IPMASQ=true\n",
		args:   []string{"-c"},
		want:   `DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"` + "\n",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "subnet.env")
			out := filepath.Join(dir, "docker_opts.env")
			writeFile(t, in, tc.subnet)
			o, err := ParseArgs(append([]string{"-f", in, "-d", out}, tc.args...), nil)
			if err != nil {
				t.Fatalf("ParseArgs: %v", err)
			}
			if err := Run(o, tc.environ, nil, discard()); err != nil {
				t.Fatalf("Run: %v", err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("output differs\ngot:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	base := map[string]string{"FLANNEL_SUBNET": "10.244.1.1/24", "FLANNEL_MTU": "1450", "FLANNEL_IPMASQ": "true"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	cases := []struct {
		name string
		vars map[string]string
		o    Options
		want string
	}{
		{"ipmasq not a bool", with("FLANNEL_IPMASQ", "yes"), Defaults(), `FLANNEL_IPMASQ="yes": must be true or false`},
		{"ipmasq capitalised, as the script's = test rejects it", with("FLANNEL_IPMASQ", "True"), Defaults(), `FLANNEL_IPMASQ="True"`},
		{"subnet not a CIDR", with("FLANNEL_SUBNET", "10.244.1.1"), Defaults(), `FLANNEL_SUBNET="10.244.1.1": not an IPv4 CIDR`},
		{"subnet IPv6", with("FLANNEL_SUBNET", "fd00::1/64"), Defaults(), `not an IPv4 CIDR`},
		{"IPv6 subnet IPv4", with("FLANNEL_IPV6_SUBNET", "10.1.1.1/24"), Defaults(), `FLANNEL_IPV6_SUBNET="10.1.1.1/24": not an IPv6 CIDR`},
		{"mtu not a number", with("FLANNEL_MTU", "big"), Defaults(), `FLANNEL_MTU="big": not a positive number`},
		{"mtu zero", with("FLANNEL_MTU", "0"), Defaults(), `FLANNEL_MTU="0"`},
		{"quote in DOCKER_OPTS", with("DOCKER_OPTS", `--label "a b"`), Defaults(), `DOCKER_OPTS=`},
		{"dollar in an option", with("DOCKER_OPT_X", `--x=$HOME`), Defaults(), `DOCKER_OPT_X=`},
		{"newline in DOCKER_OPTS", with("DOCKER_OPTS", "a\nb"), Defaults(), `DOCKER_OPTS=`},
		{"bad key", base, Options{CombinedKey: "DOCKER-OPTS"}, `not a shell variable name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Render(tc.vars, tc.o)
			if err == nil {
				t.Fatalf("Render accepted it and produced %q", res.File)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestRenderInvalidIPMasqIgnoredWithM(t *testing.T) {
	// The script only looks at FLANNEL_IPMASQ when -m is absent.
	o := Defaults()
	o.OmitIPMasq = true
	o.Combined = true
	res, err := Render(map[string]string{"FLANNEL_SUBNET": "10.1.2.1/24", "FLANNEL_IPMASQ": "maybe"}, o)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if want := `DOCKER_OPTS=" --bip=10.1.2.1/24"` + "\n"; string(res.File) != want {
		t.Errorf("got %q, want %q", res.File, want)
	}
	if want := netip.MustParsePrefix("10.1.2.0/24"); res.Subnet != want {
		t.Errorf("Subnet = %v, want %v", res.Subnet, want)
	}
}

func TestRenderCollapsesWhitespaceLikeEcho(t *testing.T) {
	o := Defaults()
	o.Individual = true
	res, err := Render(map[string]string{"DOCKER_OPT_DNS": "  --dns\t10.0.0.10   --dns 10.0.0.11 "}, o)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if want := `DOCKER_OPT_DNS="--dns 10.0.0.10 --dns 10.0.0.11"` + "\n"; string(res.File) != want {
		t.Errorf("got %q, want %q", res.File, want)
	}
}

func TestParseArgs(t *testing.T) {
	cases := []struct {
		args []string
		want Options
	}{
		{nil, Defaults()},
		{[]string{"-c"}, Options{SubnetFile: DefaultSubnetFile, OutputFile: DefaultOutputFile, CombinedKey: DefaultCombinedKey, Combined: true}},
		{[]string{"-icm"}, Options{SubnetFile: DefaultSubnetFile, OutputFile: DefaultOutputFile, CombinedKey: DefaultCombinedKey, Combined: true, Individual: true, OmitIPMasq: true}},
		{[]string{"-f", "/a", "-d/b", "-kX", "--"}, Options{SubnetFile: "/a", OutputFile: "/b", CombinedKey: "X"}},
		{[]string{"-ck", "DOCKER_NETWORK_OPTIONS", "-d", "/run/flannel/docker"}, Options{SubnetFile: DefaultSubnetFile, OutputFile: "/run/flannel/docker", CombinedKey: "DOCKER_NETWORK_OPTIONS", Combined: true}},
	}
	for _, tc := range cases {
		got, err := ParseArgs(tc.args, nil)
		if err != nil {
			t.Errorf("ParseArgs(%q): %v", tc.args, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseArgs(%q) = %+v, want %+v", tc.args, got, tc.want)
		}
	}
	bad := map[string][]string{
		"unknown option -x":         {"-x"},
		"option -f needs a value":   {"-c", "-f"},
		"unexpected arguments":      {"-c", "extra"},
		"not a shell variable name": {"-k", "1ABC"},
	}
	for want, args := range bad {
		if _, err := ParseArgs(args, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseArgs(%q) error = %v, want one saying %q", args, err, want)
		}
	}
}

func TestParseArgsSubnetFileFromEnvironment(t *testing.T) {
	env := func(k string) string {
		if k == "FLANNELD_SUBNET_FILE" {
			return "/run/weft/subnet.env"
		}
		return ""
	}
	o, err := ParseArgs([]string{"-c"}, env)
	if err != nil || o.SubnetFile != "/run/weft/subnet.env" {
		t.Errorf("default -f = %q (err %v), want $FLANNELD_SUBNET_FILE", o.SubnetFile, err)
	}
	o, err = ParseArgs([]string{"-f", "/x"}, env)
	if err != nil || o.SubnetFile != "/x" {
		t.Errorf("-f /x gave %q (err %v): the flag must win", o.SubnetFile, err)
	}
}

func TestRunMissingSubnetFileWritesNothing(t *testing.T) {
	dir := t.TempDir()
	o := Defaults()
	o.SubnetFile = filepath.Join(dir, "subnet.env")
	o.OutputFile = filepath.Join(dir, "docker_opts.env")
	err := Run(o, nil, nil, discard())
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Run error = %v, want one saying the subnet file does not exist", err)
	}
	if _, err := os.Stat(o.OutputFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output file exists after a failed run (stat: %v)", err)
	}
}

func TestRunInvalidKeepsOldOutput(t *testing.T) {
	dir := t.TempDir()
	o := Defaults()
	o.SubnetFile = filepath.Join(dir, "subnet.env")
	o.OutputFile = filepath.Join(dir, "docker_opts.env")
	writeFile(t, o.SubnetFile, "FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=sometimes\n")
	writeFile(t, o.OutputFile, "OLD\n")
	if err := Run(o, nil, nil, discard()); err == nil || !strings.Contains(err.Error(), "FLANNEL_IPMASQ") {
		t.Fatalf("Run error = %v, want one naming FLANNEL_IPMASQ", err)
	}
	if got := readFile(t, o.OutputFile); got != "OLD\n" {
		t.Errorf("output file changed to %q after a refused run", got)
	}
}

func TestRunWritesAtomicallyWithMode0644(t *testing.T) {
	dir := t.TempDir()
	o := Defaults()
	o.SubnetFile = filepath.Join(dir, "subnet.env")
	o.OutputFile = filepath.Join(dir, "sub", "docker_opts.env")
	writeFile(t, o.SubnetFile, envFlannel)
	if err := Run(o, nil, nil, discard()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st, err := os.Stat(o.OutputFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	ents, err := os.ReadDir(filepath.Dir(o.OutputFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only docker_opts.env (temp file left behind?)", names)
	}
}

func TestRunRouteConflict(t *testing.T) {
	dir := t.TempDir()
	o := Defaults()
	o.SubnetFile = filepath.Join(dir, "subnet.env")
	o.OutputFile = filepath.Join(dir, "docker_opts.env")
	writeFile(t, o.SubnetFile, envFlannel)

	var asked netip.Prefix
	conflict := func(p netip.Prefix) ([]string, error) {
		asked = p
		return []string{"10.244.1.0/24 via 192.168.1.3 dev eth0 proto 87"}, nil
	}
	err := Run(o, nil, conflict, discard())
	if !errors.Is(err, ErrRouteConflict) {
		t.Fatalf("Run error = %v, want ErrRouteConflict", err)
	}
	if !strings.Contains(err.Error(), "via 192.168.1.3") {
		t.Errorf("error %q does not show the route", err)
	}
	if want := netip.MustParsePrefix("10.244.1.0/24"); asked != want {
		t.Errorf("checked routes to %v, want %v (the masked FLANNEL_SUBNET)", asked, want)
	}
	// As the script, the file is written before the check.
	if got := readFile(t, o.OutputFile); !strings.Contains(got, `DOCKER_OPTS=" --bip=10.244.1.1/24`) {
		t.Errorf("output file not written before the route check failed: %q", got)
	}

	clean := func(netip.Prefix) ([]string, error) { return nil, nil }
	if err := Run(o, nil, clean, discard()); err != nil {
		t.Errorf("Run with no conflicting route: %v", err)
	}
	broken := func(netip.Prefix) ([]string, error) { return nil, errors.New("netlink says no") }
	if err := Run(o, nil, broken, discard()); err != nil {
		t.Errorf("Run when routes cannot be read: %v, want a warning only", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "subnet.env")
	out := filepath.Join(dir, "docker_opts.env")
	// TEST-NET-2, which no real host routes via a gateway, so the real
	// (read-only) routing check passes.
	writeFile(t, in, "FLANNEL_SUBNET=198.51.100.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n")
	var stdout, stderr strings.Builder
	if code := Main([]string{"-f", in, "-d", out, "-c"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, stderr.String())
	}
	if got, want := readFile(t, out), `DOCKER_OPTS=" --bip=198.51.100.1/24 --ip-masq=true --mtu=1500"`+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	os.Remove(out)
	if code := Main([]string{"-d", out, "-c"}, []string{"FLANNELD_SUBNET_FILE=" + in}, &stdout, &stderr); code != 0 {
		t.Fatalf("with FLANNELD_SUBNET_FILE: exit %d, stderr: %s", code, stderr.String())
	}
	if got := readFile(t, out); !strings.Contains(got, "--bip=198.51.100.1/24") {
		t.Errorf("with FLANNELD_SUBNET_FILE: got %q", got)
	}
	if code := Main([]string{"-z"}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if code := Main([]string{"-f", filepath.Join(dir, "none")}, nil, &stdout, &stderr); code != 1 {
		t.Errorf("missing subnet file: exit %d, want 1", code)
	}
	stdout.Reset()
	if code := Main([]string{"-h"}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "-k KEY") {
		t.Errorf("-h: exit %d, usage %q", code, stdout.String())
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
