package cni

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/subnetenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// envFrom parses subnet.env text the way ADD does, through a file.
func envFrom(t *testing.T, text string) subnetenv.Env {
	t.Helper()
	p := filepath.Join(t.TempDir(), "subnet.env")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := LoadSubnetEnv(p)
	if err != nil {
		t.Fatalf("LoadSubnetEnv: %v", err)
	}
	return env
}

const flannelTestEnv = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n"

func render(t *testing.T, conf, env string) []byte {
	t.Helper()
	nc, err := ParseNetConf([]byte(conf))
	if err != nil {
		t.Fatalf("ParseNetConf: %v", err)
	}
	d, err := RenderDelegate(nc, envFrom(t, env))
	if err != nil {
		t.Fatalf("RenderDelegate: %v", err)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRenderDelegateGolden pins the exact bytes saved to dataDir for DEL,
// for the configurations flannel users have in the field.
func TestRenderDelegateGolden(t *testing.T) {
	cases := []struct {
		name, conf, env string
	}{
		{
			// flannel's own plugin test input.
			name: "plain",
			conf: `{"name":"cni-flannel","type":"flannel"}`,
			env:  flannelTestEnv,
		},
		{
			// One entry of kube-flannel's conflist as libcni hands it over
			// in the middle of a chain: name/cniVersion injected, a
			// prevResult (which must not reach the delegate) and a
			// runtimeConfig (which must).
			name: "conflist",
			conf: `{"cniVersion":"0.3.1","name":"cbr0","type":"flannel",
				"delegate":{"hairpinMode":true,"isDefaultGateway":true},
				"prevResult":{"cniVersion":"0.3.1","interfaces":[{"name":"lo"}],"ips":[]},
				"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}`,
			env: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		},
		{
			// Delegate keys the plugin does not know pass through, and the
			// ones it would default are left as the user set them; numbers
			// keep their exact text.
			name: "custom-delegate",
			conf: `{"cniVersion":"1.0.0","name":"pods","type":"flannel",
				"delegate":{"type":"ipvlan","master":"eth1","mtu":1400,"ipMasq":true,"vlan":12345678901234567890,"opts":{"a":[1,2]}},
				"ipam":{"type":"host-local","dataDir":"/srv/ipam","routes":[{"dst":"192.168.0.0/16","gw":"10.1.17.254"}]}}`,
			env: flannelTestEnv,
		},
		{
			name: "bridge-explicit",
			conf: `{"cniVersion":"0.4.0","name":"n","type":"flannel",
				"delegate":{"bridge":"mybr0","isGateway":false,"forceAddress":true},
				"ipam":{"type":"static"}}`,
			env: flannelTestEnv,
		},
		{
			name: "dual-stack",
			conf: `{"cniVersion":"1.0.0","name":"cbr0","type":"flannel"}`,
			env: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\n" +
				"FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42:2::1/64\n" +
				"FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
		},
		{
			name: "ipv6-only",
			conf: `{"cniVersion":"1.0.0","name":"cbr0","type":"flannel"}`,
			env:  "FLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42:2::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
		},
		{
			// flannel's plugin accepts several networks, comma-separated.
			name: "multi-network",
			conf: `{"name":"cbr0","type":"flannel"}`,
			env:  "FLANNEL_NETWORK=10.1.0.0/16,10.2.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := append(render(t, tc.conf, tc.env), '\n')
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("delegate for %s:\n got %s\nwant %s", tc.name, got, want)
			}
		})
	}
}

// TestRenderDelegateMatchesFlannel compares with the delegate flannel's
// plugin produces in its own test, key for key (flannel's key order
// differs; the JSON object is the same).
func TestRenderDelegateMatchesFlannel(t *testing.T) {
	const flannel = `{"ipMasq":false,"ipam":{"routes":[{"dst":"10.1.0.0/16"}],"ranges":[[{"subnet":"10.1.17.0/24"}]],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}`
	got := render(t, `{"name":"cni-flannel","type":"flannel"}`, flannelTestEnv)
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(flannel), &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("got  %s\nwant %s", got, flannel)
	}
}

func TestRenderDelegateIPMasqInverted(t *testing.T) {
	for _, tc := range []struct {
		flannelMasq string
		want        bool
	}{{"true", false}, {"false", true}} {
		env := "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=" + tc.flannelMasq + "\n"
		nc, err := ParseNetConf([]byte(`{"name":"n","type":"flannel"}`))
		if err != nil {
			t.Fatal(err)
		}
		d, err := RenderDelegate(nc, envFrom(t, env))
		if err != nil {
			t.Fatal(err)
		}
		if d["ipMasq"] != tc.want {
			t.Errorf("FLANNEL_IPMASQ=%s: delegate ipMasq = %v, want %v", tc.flannelMasq, d["ipMasq"], tc.want)
		}
	}
}

func TestRenderDelegateDoesNotModifyInput(t *testing.T) {
	nc, err := ParseNetConf([]byte(`{"name":"n","type":"flannel","delegate":{"hairpinMode":true},"ipam":{"routes":[{"dst":"1.2.3.0/24"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	env := envFrom(t, flannelTestEnv)
	first, _ := RenderDelegate(nc, env)
	second, _ := RenderDelegate(nc, env)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("rendering twice differs:\n%v\n%v", first, second)
	}
	if len(nc.Delegate) != 1 || len(nc.IPAM) != 1 {
		t.Errorf("input changed: delegate %v ipam %v", nc.Delegate, nc.IPAM)
	}
	if r := nc.IPAM["routes"].([]any); len(r) != 1 {
		t.Errorf("input routes changed: %v", r)
	}
}

func TestParseNetConfRejects(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{`{"name":"n","type":"flannel","delegate":{"name":"x"}}`, `must not have a "name"`},
		{`{"name":"n","type":"flannel","delegate":{"ipam":{"type":"host-local"}}}`, `must not have an "ipam"`},
		{`{"name":"n","type":"flannel","delegate":{"type":7}}`, `string "type"`},
		{`{"name":"n","type":"flannel","delegate":"bridge"}`, `parse flannel network config`},
		{`not json`, `parse flannel network config`},
	} {
		_, err := ParseNetConf([]byte(tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseNetConf(%s) = %v, want error containing %q", tc.conf, err, tc.want)
		}
	}
}

func TestRenderDelegateRejectsBadRoutes(t *testing.T) {
	for _, conf := range []string{
		`{"name":"n","type":"flannel","ipam":{"routes":{"dst":"1.2.3.0/24"}}}`,
		`{"name":"n","type":"flannel","ipam":{"routes":["1.2.3.0/24"]}}`,
	} {
		nc, err := ParseNetConf([]byte(conf))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := RenderDelegate(nc, envFrom(t, flannelTestEnv)); err == nil || !strings.Contains(err.Error(), "ipam.routes") {
			t.Errorf("RenderDelegate(%s) = %v, want an ipam.routes error", conf, err)
		}
	}
}

func TestParseNetConfDefaults(t *testing.T) {
	nc, err := ParseNetConf([]byte(`{"name":"n","type":"flannel","prevResult":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if nc.SubnetFile != "/run/flannel/subnet.env" || nc.DataDir != "/var/lib/cni/flannel" {
		t.Errorf("defaults: subnetFile %q dataDir %q", nc.SubnetFile, nc.DataDir)
	}
	if nc.Delegate == nil || nc.PrevResult != nil {
		t.Errorf("delegate %v prevResult %s", nc.Delegate, nc.PrevResult)
	}
}

func TestBridgeTarget(t *testing.T) {
	env := flannelTestEnv
	for _, tc := range []struct {
		conf            string
		bridge, ipamDir string
		ok              bool
	}{
		{`{"name":"cbr0","type":"flannel"}`, "cni0", "/var/lib/cni/networks/cbr0", true},
		{`{"name":"cbr0","type":"flannel","delegate":{"isGateway":false,"isDefaultGateway":true,"bridge":"br9"}}`, "br9", "/var/lib/cni/networks/cbr0", true},
		{`{"name":"cbr0","type":"flannel","ipam":{"dataDir":"/tmp/x"}}`, "cni0", "/tmp/x/cbr0", true},
		{`{"name":"cbr0","type":"flannel","ipam":{"type":"dhcp"}}`, "cni0", "", true},
		{`{"name":"cbr0","type":"flannel","delegate":{"isGateway":false}}`, "", "", false},
		{`{"name":"cbr0","type":"flannel","delegate":{"forceAddress":true}}`, "", "", false},
		{`{"name":"cbr0","type":"flannel","delegate":{"type":"ipvlan"}}`, "", "", false},
		{`{"name":"cbr0","type":"flannel","delegate":{"bridge":"../x"}}`, "", "", false},
	} {
		nc, err := ParseNetConf([]byte(tc.conf))
		if err != nil {
			t.Fatal(err)
		}
		d, err := RenderDelegate(nc, envFrom(t, env))
		if err != nil {
			t.Fatal(err)
		}
		bridge, dir, ok := bridgeTarget(d)
		if bridge != tc.bridge || dir != tc.ipamDir || ok != tc.ok {
			t.Errorf("%s: bridgeTarget = %q, %q, %v; want %q, %q, %v", tc.conf, bridge, dir, ok, tc.bridge, tc.ipamDir, tc.ok)
		}
	}
}
