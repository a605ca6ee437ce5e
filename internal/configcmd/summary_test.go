package configcmd

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/netconf"
)

// TestEffectiveRoundTrip: the effective config, with every default
// written out, parses to the same Config as the original.
func TestEffectiveRoundTrip(t *testing.T) {
	for _, raw := range []string{
		`{"Network": "172.7.0.0/16", "Backend": {"Type": "host-gw"}}`,
		`{"Network": "10.0.0.0/26", "SubnetLen": 28, "SubnetMin": "10.0.0.16", "Backend": {"Type": "vxlan", "VNI": 4}}`,
		`{"Network": "10.244.0.0/16"}`,
		`{"EnableIPv6": true, "Network": "10.1.0.0/16", "IPv6Network": "2001:cafe:42::/56", "Backend": {"Type": "host-gw"}}`,
		`{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/48", "EnableNFTables": true, "Backend": {"Type": "host-gw"}}`,
	} {
		want, err := netconf.Parse([]byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		b, err := json.Marshal(EffectiveOf(want))
		if err != nil {
			t.Fatal(err)
		}
		got, err := netconf.Parse(b)
		if err != nil {
			t.Fatalf("effective %s of %s does not parse: %v", b, raw, err)
		}
		// json.Marshal compacts the raw Backend object.
		got.Backend, want.Backend = json.RawMessage(compact(t, got.Backend)), json.RawMessage(compact(t, want.Backend))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s\neffective %s\nparses to %+v\nwant      %+v", raw, b, got, want)
		}
	}
}

func TestWriteSummaryDualStack(t *testing.T) {
	raw := []byte(`{"EnableIPv6": true, "Network": "10.1.0.0/16", "SubnetLen": 24, "IPv6Network": "2001:cafe:42::/56", "Backend": {"Type": "host-gw"}}`)
	cfg, err := netconf.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteSummary(&b, raw, cfg); err != nil {
		t.Fatal(err)
	}
	want := `Network        10.1.0.0/16
SubnetLen      24
SubnetMin      10.1.1.0  (default)
SubnetMax      10.1.255.0  (default)
pool           255 subnets of /24, one per host
IPv6Network    2001:cafe:42::/56
IPv6SubnetLen  64  (default)
IPv6SubnetMin  2001:cafe:42:1::  (default)
IPv6SubnetMax  2001:cafe:42:ff::  (default)
Backend        host-gw  {"Type": "host-gw"}
`
	if b.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWarningsQuietForPlainConfig(t *testing.T) {
	raw := []byte(`{"network": "10.1.0.0/16", "SUBNETLEN": 25, "Backend": {"Type": "host-gw"}}`)
	if w := Warnings(raw); len(w) != 0 {
		t.Errorf("warnings for a valid config whose keys differ only in case: %q", w)
	}
}
