// Package backends is the table of data planes this build of weft offers.
// It is the one list of backend names: the agent builds backends from it,
// status asks it what the kernel should hold, configcmd and bench name
// what it holds, and cleanup removes what its backends leave behind.
// Adding a backend is adding a row to All; nothing registers itself.
package backends

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/hostgw"
	"github.com/weftnet/weft/internal/backend/udp"
	"github.com/weftnet/weft/internal/backend/vxlan"
	"github.com/weftnet/weft/internal/backend/wireguard"
	"github.com/weftnet/weft/internal/netconf"
)

// All returns every backend's descriptor, in the order help texts list
// them. Each call returns a fresh slice.
func All() []backend.Descriptor {
	return []backend.Descriptor{
		hostgw.Descriptor(),
		vxlan.Descriptor(),
		udp.Descriptor(),
		wireguard.Descriptor(),
	}
}

// Names returns the backends' names, in All's order.
func Names() []string {
	all := All()
	names := make([]string, len(all))
	for i, d := range all {
		names[i] = d.Name
	}
	return names
}

// Lookup returns the backend named name (Backend.Type, lower case).
func Lookup(name string) (backend.Descriptor, bool) {
	i := slices.IndexFunc(All(), func(d backend.Descriptor) bool { return d.Name == name })
	if i < 0 {
		return backend.Descriptor{}, false
	}
	return All()[i], true
}

// ForLeaseType returns the backend whose peers publish BackendType typ.
func ForLeaseType(typ string) (backend.Descriptor, bool) {
	for _, d := range All() {
		if slices.Contains(d.LeaseTypes, typ) {
			return d, true
		}
	}
	return backend.Descriptor{}, false
}

// Factories maps each name to its constructor, as the agent takes them.
func Factories() map[string]backend.Factory {
	m := make(map[string]backend.Factory)
	for _, d := range All() {
		m[d.Name] = d.New
	}
	return m
}

// flannelOnly are backend types flannel knows (now or in earlier releases)
// that weft does not implement; naming one gets a clearer error than a
// typo does.
var flannelOnly = []string{"ipip", "ipsec", "alloc", "extension", "tencent-vpc", "aws-vpc", "gce", "ali-vpc"}

// CheckOptions checks the network config's Backend object raw against
// the options of backend typ (Backend.Type, lower case). Errors name
// Backend.Type when typ is not a backend of this build, and otherwise the
// option at fault. netconf.Parse checks the rest of the config and leaves
// this to the table, so that the agent, weft config and weft status judge
// a backend with the same code.
func CheckOptions(typ string, raw json.RawMessage) error {
	d, ok := Lookup(typ)
	switch {
	case !ok && slices.Contains(flannelOnly, typ):
		return fmt.Errorf("Backend.Type %q is a flannel backend that this build of weft does not implement (it has %s)", typ, strings.Join(Names(), ", "))
	case !ok:
		return fmt.Errorf("Backend.Type %q is not a backend of this build of weft (it has %s)", typ, strings.Join(Names(), ", "))
	}
	if err := d.CheckOptions(raw); err != nil {
		return fmt.Errorf("Backend: %w", err)
	}
	return nil
}

// ParseConfig is netconf.Parse followed by CheckOptions: raw is a network
// config an agent of this build can run.
func ParseConfig(raw []byte) (*netconf.Config, error) {
	cfg, err := netconf.Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := CheckOptions(cfg.BackendType, cfg.Backend); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	return cfg, nil
}
