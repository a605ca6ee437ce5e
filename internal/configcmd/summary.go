// Package configcmd is `weft config put|get`: it writes and reads the
// network config at <prefix>/config in etcd, so that nobody has to type
// JSON into etcdctl. put validates with backends.ParseConfig, the same
// check an agent applies when it reads the config, refuses an invalid
// config with the reason and writes nothing, and shows what the stored
// config means once flannel's defaults are filled in.
package configcmd

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/weftnet/weft/internal/netconf"
)

// Effective is a parsed config with every default filled in, under
// flannel's field names, so that it is itself a config put accepts and
// means the same.
type Effective struct {
	EnableIPv4     bool
	EnableIPv6     bool
	Network        string `json:",omitempty"`
	SubnetLen      int    `json:",omitempty"`
	SubnetMin      string `json:",omitempty"`
	SubnetMax      string `json:",omitempty"`
	IPv6Network    string `json:",omitempty"`
	IPv6SubnetLen  int    `json:",omitempty"`
	IPv6SubnetMin  string `json:",omitempty"`
	IPv6SubnetMax  string `json:",omitempty"`
	EnableNFTables bool
	Backend        json.RawMessage
}

// EffectiveOf renders c.
func EffectiveOf(c *netconf.Config) Effective {
	e := Effective{
		EnableIPv4:     c.EnableIPv4,
		EnableIPv6:     c.EnableIPv6,
		EnableNFTables: c.EnableNFTables,
		Backend:        c.Backend,
	}
	if c.EnableIPv4 {
		e.Network = c.Network.String()
		e.SubnetLen = c.SubnetLen
		e.SubnetMin = c.SubnetMin.String()
		e.SubnetMax = c.SubnetMax.String()
	}
	if c.EnableIPv6 {
		e.IPv6Network = c.IPv6Network.String()
		e.IPv6SubnetLen = c.IPv6SubnetLen
		e.IPv6SubnetMin = c.IPv6SubnetMin.String()
		e.IPv6SubnetMax = c.IPv6SubnetMax.String()
	}
	return e
}

// topKeys returns the config's top-level keys, lower-cased, as
// encoding/json matches them to fields; nil when raw is not an object.
func topKeys(raw []byte) map[string]string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	keys := map[string]string{}
	for k, v := range m {
		if string(v) != "null" {
			keys[strings.ToLower(k)] = k
		}
	}
	return keys
}

// fields are the config keys flannel reads, lower-cased.
var fields = []string{
	"network", "enableipv4", "enableipv6", "ipv6network",
	"subnetlen", "subnetmin", "subnetmax",
	"ipv6subnetlen", "ipv6subnetmin", "ipv6subnetmax",
	"enablenftables", "backend",
}

// removedFields were config keys in older flannel releases.
var removedFields = []string{"networks", "ipv6networks"}

// Warnings lists what is valid but probably not what the author meant:
// keys flannel ignores, and flannel's surprising udp default.
func Warnings(raw []byte) []string {
	var out []string
	keys := topKeys(raw)
	lower := slices.Sorted(maps.Keys(keys))
	for _, lk := range lower {
		k := keys[lk]
		switch {
		case slices.Contains(removedFields, lk):
			out = append(out, fmt.Sprintf("%q was removed from flannel in v0.25.0 (one Network per config now); flannel and weft ignore it", k))
		case !slices.Contains(fields, lk):
			out = append(out, fmt.Sprintf("%q is not a network config field; flannel and weft ignore it (a typo?)", k))
		}
	}
	if _, ok := keys["backend"]; !ok {
		out = append(out, `no Backend given: flannel and weft then use "udp" (not vxlan, whatever flannel's documentation says); name the backend, e.g. "Backend": {"Type": "host-gw"}`)
	}
	return out
}

// WriteSummary prints what the config means, one field a line, marking the
// values that come from flannel's defaults rather than from raw.
func WriteSummary(w io.Writer, raw []byte, c *netconf.Config) error {
	keys := topKeys(raw)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(field, val string) {
		if _, ok := keys[strings.ToLower(field)]; !ok {
			val += "  (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", field, val)
	}
	e := EffectiveOf(c)
	if c.EnableIPv4 {
		line("Network", e.Network)
		line("SubnetLen", fmt.Sprintf("%d", e.SubnetLen))
		line("SubnetMin", e.SubnetMin)
		line("SubnetMax", e.SubnetMax)
		fmt.Fprintf(tw, "pool\t%d subnets of /%d, one per host\n", c.Subnets(), c.SubnetLen)
	} else {
		fmt.Fprintf(tw, "Network\t(IPv4 disabled)\n")
	}
	if c.EnableIPv6 {
		line("IPv6Network", e.IPv6Network)
		line("IPv6SubnetLen", fmt.Sprintf("%d", e.IPv6SubnetLen))
		line("IPv6SubnetMin", e.IPv6SubnetMin)
		line("IPv6SubnetMax", e.IPv6SubnetMax)
	}
	line("Backend", c.BackendType+"  "+string(c.Backend))
	if c.EnableNFTables {
		fmt.Fprintf(tw, "EnableNFTables\ttrue\n")
	}
	return tw.Flush()
}
