package backends

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/vxlan"
)

func TestTableIsWellFormed(t *testing.T) {
	names := make(map[string]bool)
	leaseTypes := make(map[string]string)
	for _, d := range All() {
		if d.Name == "" || d.Name != strings.ToLower(d.Name) {
			t.Errorf("name %q: must be Backend.Type in lower case", d.Name)
		}
		if names[d.Name] {
			t.Errorf("name %q listed twice", d.Name)
		}
		names[d.Name] = true
		if d.New == nil || d.CheckOptions == nil || d.Expect == nil {
			t.Errorf("%s: New, CheckOptions and Expect are all required", d.Name)
		}
		if len(d.LeaseTypes) == 0 {
			t.Errorf("%s: no lease types, so no lease is ever its peer", d.Name)
		}
		for _, lt := range d.LeaseTypes {
			if other, dup := leaseTypes[lt]; dup {
				t.Errorf("lease type %q claimed by %s and %s", lt, other, d.Name)
			}
			leaseTypes[lt] = d.Name
		}
		got, ok := Lookup(d.Name)
		if !ok || got.Name != d.Name {
			t.Errorf("Lookup(%q) = %q, %v", d.Name, got.Name, ok)
		}
		for _, lt := range d.LeaseTypes {
			if got, ok := ForLeaseType(lt); !ok || got.Name != d.Name {
				t.Errorf("ForLeaseType(%q) = %q, %v; want %s", lt, got.Name, ok, d.Name)
			}
		}
		for _, p := range d.StateFiles {
			if _, err := filepath.Match(p, ""); err != nil || strings.ContainsRune(p, filepath.Separator) {
				t.Errorf("%s: state file pattern %q must be a glob of names in the state directory (%v)", d.Name, p, err)
			}
		}
	}
	if _, ok := Lookup("ipip"); ok {
		t.Error("Lookup found a backend this build lacks")
	}
	if f := Factories(); len(f) != len(All()) {
		t.Errorf("Factories has %d entries for %d backends", len(f), len(All()))
	}
	if !slices.Equal(Names(), []string{"host-gw", "vxlan", "udp", "wireguard"}) {
		t.Errorf("Names() = %v", Names())
	}
}

// A config names its backend; the table judges the name and the
// options, and ParseConfig applies both that and netconf's checks.
func TestParseConfig(t *testing.T) {
	for _, n := range Names() {
		cfg, err := ParseConfig([]byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"` + strings.ToUpper(n) + `"}}`))
		if err != nil || cfg.BackendType != n {
			t.Errorf("%s: %+v, %v", n, cfg, err)
		}
	}
	for _, c := range []struct{ raw, want string }{
		{`{"Network":"10.244.0.0/30","Backend":{"Type":"vxlan"}}`, "too small"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":99999999}}`, "VNI"},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlann"}}`, `Backend.Type "vxlann" is not a backend of this build of weft (it has host-gw, vxlan, udp, wireguard)`},
		{`{"Network":"10.244.0.0/16","Backend":{"Type":"IPIP"}}`, `Backend.Type "ipip" is a flannel backend that this build of weft does not implement`},
	} {
		if _, err := ParseConfig([]byte(c.raw)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one containing %q", c.raw, err, c.want)
		}
	}
}

// Every backend's options parser refuses what is not an object, and names
// the option at fault.
func TestCheckOptionsNamesTheField(t *testing.T) {
	for _, d := range All() {
		if err := CheckOptions(d.Name, nil); err != nil {
			t.Errorf("%s: no options: %v", d.Name, err)
		}
		if err := CheckOptions(d.Name, json.RawMessage(`{"Type":"`+d.Name+`"}`)); err != nil {
			t.Errorf("%s: defaults: %v", d.Name, err)
		}
		if err := CheckOptions(d.Name, json.RawMessage(`[1]`)); err == nil || !strings.Contains(err.Error(), d.Name) {
			t.Errorf("%s: a list: err %v, want one naming the backend", d.Name, err)
		}
	}
	for _, c := range []struct{ typ, raw, field string }{
		{"vxlan", `{"VNI":-1}`, "VNI"},
		{"vxlan", `{"Port":70000}`, "Port"},
		{"vxlan", `{"MTU":100}`, "MTU"},
		{"vxlan", `{"VNI":"one"}`, "VNI"},
		{"udp", `{"Port":70000}`, "Port"},
		{"udp", `{"Port":-1}`, "Port"},
		{"wireguard", `{"ListenPort":70000}`, "ListenPort"},
		{"wireguard", `{"PSK":"short"}`, "PSK"},
		{"wireguard", `{"Mode":"mesh"}`, "Mode"},
		{"wireguard", `{"PersistentKeepaliveInterval":-1}`, "PersistentKeepaliveInterval"},
		{"wireguard", `{"MTU":100}`, "MTU"},
		{"ipip", `{}`, "flannel backend"},
		{"tencent-vpc", `{}`, "flannel backend"},
	} {
		err := CheckOptions(c.typ, json.RawMessage(c.raw))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s %s: err %v, want one naming %s", c.typ, c.raw, err, c.field)
		}
	}
}

// Cleanup deletes what the backends create, and nothing else.
func TestCleanupFacts(t *testing.T) {
	ours := func(kind, name string) bool {
		for _, d := range All() {
			if slices.ContainsFunc(d.Devices, func(f backend.DeviceFact) bool { return f.Matches(kind, name) }) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		kind, name string
		want       bool
	}{
		{"vxlan", vxlan.DeviceName(1), true},
		{"vxlan", vxlan.DeviceName(4096), true},
		{"tuntap", "flannel0", true},
		{"vxlan", "flannel.", false},
		{"vxlan", "vxlan0", false},
		{"tuntap", "flannel1", false},
		{"bridge", "flannel.1", false},
		{"bridge", "cni0", false},
	} {
		if got := ours(c.kind, c.name); got != c.want {
			t.Errorf("%s device %s: ours = %v, want %v", c.kind, c.name, got, c.want)
		}
	}
	vx, _ := Lookup("vxlan")
	for _, vni := range []int{0, 1, 9999999} {
		name := vxlan.MACFileName(vni)
		if !slices.ContainsFunc(vx.StateFiles, func(p string) bool { ok, _ := filepath.Match(p, name); return ok }) {
			t.Errorf("vxlan's state files %v miss its MAC file %s", vx.StateFiles, name)
		}
	}
}
