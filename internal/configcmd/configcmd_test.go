package configcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/internal/embedetcd"
	"github.com/weftnet/weft/internal/embedetcd/etcdtest"
	"github.com/weftnet/weft/internal/netconf"
	etcdstore "github.com/weftnet/weft/internal/store/etcd"
)

const (
	prefix    = "/atomic.io/network"
	configKey = prefix + "/config"
	seedConf  = `{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`
)

type result struct {
	code           int
	stdout, stderr string
}

// run runs `weft config ARGS` against srv with the prefix given by flag,
// and an environment holding only env.
func run(t *testing.T, srv *embedetcd.Server, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errw strings.Builder
	full := append([]string{args[0], "--etcd-endpoints=" + srv.Endpoint(), "--etcd-prefix=" + prefix}, args[1:]...)
	code := Main(context.Background(), full, Env{
		Getenv: func(k string) string { return env[k] },
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errw,
	})
	return result{code, out.String(), errw.String()}
}

func rawClient(t *testing.T, srv *embedetcd.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// stored returns the value at key, and whether there is one.
func stored(t *testing.T, cli *clientv3.Client, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

func TestPutValidThenGet(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)

	r := run(t, srv, "", nil, "put", "  "+seedConf+"\n")
	if r.code != 0 {
		t.Fatalf("put: exit %d\n%s", r.code, r.stderr)
	}
	got, ok := stored(t, cli, configKey)
	if !ok || got != seedConf {
		t.Fatalf("%s holds %q (present %v), want the config trimmed: %q", configKey, got, ok, seedConf)
	}
	for _, want := range []string{
		"stored " + configKey + ":\n" + seedConf + "\n",
		"Network    172.7.0.0/16\n",
		"SubnetLen  24  (default)\n",
		"SubnetMin  172.7.1.0  (default)\n",
		"SubnetMax  172.7.255.0  (default)\n",
		"pool       255 subnets of /24, one per host\n",
		`Backend    host-gw  {"Type": "host-gw"}` + "\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("put output lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.stderr != "" && strings.Contains(r.stderr, "warning:") {
		t.Errorf("unexpected warnings for a plain config:\n%s", r.stderr)
	}

	// The agent's own read path accepts what put stored.
	st, err := etcdstore.New(context.Background(), etcdstore.Options{Endpoints: []string{srv.Endpoint()}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := st.Config(context.Background())
	if err != nil {
		t.Fatalf("agent's Config after put: %v", err)
	}
	if cfg.Network.String() != "172.7.0.0/16" || cfg.BackendType != "host-gw" {
		t.Errorf("agent reads %v %s", cfg.Network, cfg.BackendType)
	}

	r = run(t, srv, "", nil, "get")
	if r.code != 0 || r.stdout != seedConf+"\n" {
		t.Errorf("get: exit %d, stdout %q, want the stored bytes and a newline\n%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, srv, "", nil, "get", "--parsed")
	if r.code != 0 || !strings.HasPrefix(r.stdout, seedConf+"\n\n") || !strings.Contains(r.stdout, "pool       255 subnets") {
		t.Errorf("get --parsed: exit %d\n%s", r.code, r.stdout)
	}
	r = run(t, srv, "", nil, "get", "-o", "json")
	if r.code != 0 {
		t.Fatalf("get -o json: exit %d\n%s", r.code, r.stderr)
	}
	var doc struct {
		Key       string
		Config    json.RawMessage
		Effective json.RawMessage
		Subnets   int
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("get -o json is not JSON: %v\n%s", err, r.stdout)
	}
	if doc.Key != configKey || compact(t, doc.Config) != compact(t, []byte(seedConf)) || doc.Subnets != 255 {
		t.Errorf("get -o json = %+v", doc)
	}
	// The effective config is itself a config that means the same.
	again, err := netconf.Parse(doc.Effective)
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, doc.Effective)
	}
	again.Backend, cfg.Backend = json.RawMessage(compact(t, again.Backend)), json.RawMessage(compact(t, cfg.Backend))
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("effective config parses to %+v, stored one to %+v", again, cfg)
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return buf.String()
}

func TestPutInvalidWritesNothing(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	cases := []struct{ config, reason string }{
		{`{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}`, "parse network config"},
		{`{"Network": "172.7.0.0/16", "Backend": {"Type": "hostgw"}}`, `Backend.Type "hostgw" is not a backend of this build of weft`},
		{`{"Network": "172.7.0.0/16", "Backend": {"Type": "vxlan", "VNI": 99999999}}`, "VNI"},
		{`{"Network": "172.7.0.0/16", "SubnetLen": 31}`, "SubnetLen 31 is too long"},
		{`{"Network": "172.7.0.0/30"}`, "Minimum useful network prefix is /28"},
		{`{"Backend": {"Type": "host-gw"}}`, "Network is missing"},
		{`   `, "empty network config"},
	}
	for _, tc := range cases {
		r := run(t, srv, "", nil, "put", tc.config)
		if r.code != 1 {
			t.Errorf("put %s: exit %d, want 1", tc.config, r.code)
		}
		if !strings.Contains(r.stderr, tc.reason) || !strings.Contains(r.stderr, configKey) {
			t.Errorf("put %s: stderr does not give the reason %q and the key:\n%s", tc.config, tc.reason, r.stderr)
		}
		if v, ok := stored(t, cli, configKey); ok {
			t.Fatalf("put %s wrote %q", tc.config, v)
		}
	}

	// A refused config leaves an existing one alone.
	if r := run(t, srv, "", nil, "put", seedConf); r.code != 0 {
		t.Fatalf("put: exit %d\n%s", r.code, r.stderr)
	}
	if r := run(t, srv, "", nil, "put", `{"Network": "10.0.0.0/8", "SubnetLen": 7}`); r.code != 1 {
		t.Errorf("invalid put over a valid config: exit %d", r.code)
	}
	if v, _ := stored(t, cli, configKey); v != seedConf {
		t.Errorf("config became %q after a refused put", v)
	}
}

func TestGetMissingNamesKeyAndCommand(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	r := run(t, srv, "", nil, "get")
	if r.code != 1 || r.stdout != "" {
		t.Errorf("get: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, want := range []string{
		"no network config at " + configKey,
		"weft config put --etcd-endpoints=" + srv.Endpoint() + " --etcd-prefix=" + prefix + " '{",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

func TestGetInvalidStoredConfig(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)
	bad := `{"Network": "172.7.0.0/16", "Backend": {"Type": "ipip"}}`
	if _, err := cli.Put(context.Background(), configKey, bad); err != nil {
		t.Fatal(err)
	}
	r := run(t, srv, "", nil, "get")
	if r.code != 1 || r.stdout != bad+"\n" || !strings.Contains(r.stderr, "invalid") || !strings.Contains(r.stderr, "ipip") {
		t.Errorf("get of an invalid config: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, srv, "", nil, "get", "-o", "json")
	var doc struct{ Error string }
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &doc) != nil || !strings.Contains(doc.Error, "ipip") {
		t.Errorf("get -o json of an invalid config: exit %d\n%s", r.code, r.stdout)
	}
}

func TestPutInputsAndEnvironment(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)

	// stdin via "-", flags after the argument.
	var out, errw strings.Builder
	env := Env{Getenv: func(string) string { return "" }, Stdin: strings.NewReader(seedConf), Stdout: &out, Stderr: &errw}
	code := Main(context.Background(), []string{"put", "-", "--etcd-endpoints", srv.Endpoint(), "--etcd-prefix", prefix}, env)
	if v, _ := stored(t, cli, configKey); code != 0 || v != seedConf {
		t.Fatalf("put - : exit %d, stored %q\n%s", code, v, errw.String())
	}

	// -f FILE, with endpoints and prefix from FLANNELD_* only.
	file := filepath.Join(t.TempDir(), "net.json")
	conf2 := `{"Network": "10.5.0.0/16", "SubnetLen": 26, "Backend": {"Type": "host-gw"}}`
	if err := os.WriteFile(file, []byte(conf2+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// FLANNELD_DRY_RUN is not a variable weft reads: the config is stored.
	vars := map[string]string{"FLANNELD_ETCD_ENDPOINTS": srv.Endpoint(), "FLANNELD_ETCD_PREFIX": "/other/network", "FLANNELD_DRY_RUN": "true"}
	out.Reset()
	errw.Reset()
	env = Env{Getenv: func(k string) string { return vars[k] }, Stdout: &out, Stderr: &errw}
	if code := Main(context.Background(), []string{"put", "-f", file}, env); code != 0 {
		t.Fatalf("put -f: exit %d\n%s", code, errw.String())
	}
	if v, _ := stored(t, cli, "/other/network/config"); v != conf2 {
		t.Errorf("/other/network/config = %q, want %q", v, conf2)
	}
	if !strings.Contains(out.String(), "pool       1023 subnets of /26") {
		t.Errorf("summary:\n%s", out.String())
	}

	// Two sources, or none, are usage errors.
	for _, args := range [][]string{{"put", "-f", file, seedConf}, {"put"}, {"put", "{}", "{}"}} {
		errw.Reset()
		if code := Main(context.Background(), args, env); code != 2 {
			t.Errorf("%q: exit %d, want 2\n%s", args, code, errw.String())
		}
	}
}

func TestPutWarnsAndDryRun(t *testing.T) {
	srv := etcdtest.StartForTest(t)
	cli := rawClient(t, srv)

	r := run(t, srv, "", nil, "put", "--dry-run", `{"Network": "10.1.0.0/16", "SubnetLenn": 26, "Networks": ["10.2.0.0/16"]}`)
	if r.code != 0 {
		t.Fatalf("put --dry-run: exit %d\n%s", r.code, r.stderr)
	}
	if _, ok := stored(t, cli, configKey); ok {
		t.Error("--dry-run stored the config")
	}
	for _, want := range []string{
		`"SubnetLenn" is not a network config field`,
		`"Networks" was removed from flannel`,
		`no Backend given: flannel and weft then use "udp"`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("warnings lack %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "not stored (dry run)") || !strings.Contains(r.stdout, "Backend    udp  ") {
		t.Errorf("dry-run output:\n%s", r.stdout)
	}

	if r := run(t, srv, "", nil, "put", seedConf); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r = run(t, srv, "", nil, "put", `{"Network": "172.8.0.0/16", "Backend": {"Type": "host-gw"}}`)
	if r.code != 0 {
		t.Fatalf("put: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "Network changes from 172.7.0.0/16 to 172.8.0.0/16") {
		t.Errorf("no warning about the Network change:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "replacing\n"+seedConf) {
		t.Errorf("put does not show what it replaced:\n%s", r.stdout)
	}
}

func TestUnreachableEtcdFails(t *testing.T) {
	var out, errw strings.Builder
	env := Env{Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errw}
	start := time.Now()
	// Port 1 on loopback: nothing listens there.
	code := Main(context.Background(), []string{"get", "--etcd-endpoints=http://127.0.0.1:1", "--timeout=2s"}, env)
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, errw.String())
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v despite --timeout=2s", d)
	}
}

func TestParseInterleaved(t *testing.T) {
	o := struct{ a string }{}
	mk := func() *flagSet { return newTestFlags(&o.a) }
	cases := []struct {
		args []string
		pos  []string
		a    string
	}{
		{[]string{"x", "-a", "1"}, []string{"x"}, "1"},
		{[]string{"-a", "1", "x", "y"}, []string{"x", "y"}, "1"},
		{[]string{"x", "--", "-a", "2"}, []string{"x", "-a", "2"}, ""},
	}
	for _, tc := range cases {
		o.a = ""
		pos, err := parseInterleaved(mk().FlagSet, tc.args)
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || o.a != tc.a {
			t.Errorf("%q: pos %q a %q err %v; want %q %q", tc.args, pos, o.a, err, tc.pos, tc.a)
		}
	}
}

// put --dry-run validates and shows without connecting: nothing listens at
// the endpoint, and it still answers at once.
func TestPutDryRunNeedsNoEtcd(t *testing.T) {
	var out, errw strings.Builder
	env := Env{Getenv: func(string) string { return "" }, Stdout: &out, Stderr: &errw}
	start := time.Now()
	code := Main(context.Background(), []string{"put", "--dry-run", "--etcd-endpoints=http://127.0.0.1:1", "--etcd-prefix=/atomic.io/network/", seedConf}, env)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errw.String())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v: did it wait for etcd?", d)
	}
	for _, want := range []string{
		"valid; not stored (dry run). " + configKey + " would hold:\n" + seedConf + "\n",
		"pool       255 subnets of /24, one per host\n",
		`Backend    host-gw  {"Type": "host-gw"}` + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out.String())
		}
	}

	// An invalid config is refused with the reason and the key, exit 1.
	out.Reset()
	errw.Reset()
	code = Main(context.Background(), []string{"put", "--dry-run", "--etcd-endpoints=http://127.0.0.1:1", "--etcd-prefix=" + prefix, `{"Network": "172.7.0.0/30"}`}, env)
	if code != 1 || !strings.Contains(errw.String(), "Minimum useful network prefix is /28") || !strings.Contains(errw.String(), configKey) {
		t.Errorf("invalid dry run: exit %d, stderr %q", code, errw.String())
	}
	if strings.Contains(out.String(), "would hold") {
		t.Errorf("invalid dry run showed the config as valid:\n%s", out.String())
	}
}
