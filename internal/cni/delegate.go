package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weftnet/weft/internal/subnetenv"
)

// Defaults of the delegate plugins that the bridge repair must agree with.
const (
	defaultDelegateType = "bridge"
	defaultIPAMType     = "host-local"
	defaultBridgeName   = "cni0"                  // bridge plugin's default "bridge"
	defaultIPAMDataDir  = "/var/lib/cni/networks" // host-local's default "dataDir"
)

// RenderDelegate builds the delegate plugin's config from the plugin's
// config and subnet.env, with flannel's rules:
//
//   - name = the network's name; type defaults to "bridge";
//   - ipMasq = !FLANNEL_IPMASQ and mtu = FLANNEL_MTU unless the delegate sets
//     them (flanneld masquerades pod traffic itself when FLANNEL_IPMASQ=true,
//     so the bridge must not do it twice);
//   - isGateway = true for the bridge unless set;
//   - cniVersion and runtimeConfig copied from the plugin's config;
//   - ipam = the top-level ipam (type default "host-local") with ranges set
//     to the node's subnet(s) and one route per cluster network appended to
//     the user's routes.
//
// Every other delegate key passes through untouched. nc is not modified.
// The result marshals (encoding/json sorts map keys) to the bytes saved for
// DEL.
func RenderDelegate(nc *NetConf, env subnetenv.Env) (map[string]any, error) {
	d := make(map[string]any, len(nc.Delegate)+8)
	for k, v := range nc.Delegate {
		d[k] = v
	}
	d["name"] = nc.Name
	if _, ok := d["type"]; !ok {
		d["type"] = defaultDelegateType
	}
	if _, ok := d["ipMasq"]; !ok {
		d["ipMasq"] = !env.IPMasq
	}
	if _, ok := d["mtu"]; !ok {
		d["mtu"] = env.MTU
	}
	if d["type"] == defaultDelegateType {
		if _, ok := d["isGateway"]; !ok {
			d["isGateway"] = true
		}
	}
	if nc.CNIVersion != "" {
		d["cniVersion"] = nc.CNIVersion
	}
	ipam, err := renderIPAM(nc.IPAM, env)
	if err != nil {
		return nil, err
	}
	d["ipam"] = ipam
	if len(nc.RuntimeConfig) != 0 {
		d["runtimeConfig"] = nc.RuntimeConfig
	}
	return d, nil
}

func renderIPAM(in map[string]any, env subnetenv.Env) (map[string]any, error) {
	ipam := make(map[string]any, len(in)+3)
	for k, v := range in {
		ipam[k] = v
	}
	if _, ok := ipam["type"]; !ok {
		ipam["type"] = defaultIPAMType
	}

	var ranges []any
	for _, s := range []netip.Prefix{env.Subnet, env.IPv6Subnet} {
		if s.IsValid() {
			ranges = append(ranges, []any{map[string]any{"subnet": s.Masked().String()}})
		}
	}
	if len(ranges) == 0 {
		return nil, errors.New("subnet.env has neither FLANNEL_SUBNET nor FLANNEL_IPV6_SUBNET")
	}
	ipam["ranges"] = ranges

	var routes []any
	if r, ok := ipam["routes"]; ok && r != nil {
		list, isList := r.([]any)
		if !isList {
			return nil, fmt.Errorf(`flannel network config: "ipam.routes" must be a list of {"dst": ...} objects, got %s`, jsonText(r))
		}
		for _, e := range list {
			if _, isObj := e.(map[string]any); !isObj {
				return nil, fmt.Errorf(`flannel network config: "ipam.routes" entry %s is not an object`, jsonText(e))
			}
		}
		routes = append(routes, list...)
	}
	for _, nw := range append(append([]netip.Prefix(nil), env.Networks...), env.IPv6Network...) {
		routes = append(routes, map[string]any{"dst": nw.Masked().String()})
	}
	ipam["routes"] = routes
	return ipam, nil
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// bridgeTarget says whether the rendered delegate makes the bridge plugin
// put a gateway address on a host bridge and, if so, which bridge and which
// host-local store holds this network's reservations ("" when IPAM is not
// host-local). It reads the keys the way the plugins decode them (Go
// encoding/json: exact key first, else case-insensitive).
//
// With "forceAddress": true the bridge plugin replaces old addresses
// itself, so no repair is needed.
func bridgeTarget(d map[string]any) (bridge, ipamDir string, ok bool) {
	if t, _ := lookupFold(d, "type").(string); t != defaultDelegateType {
		return "", "", false
	}
	isGW, _ := lookupFold(d, "isGateway").(bool)
	isDefGW, _ := lookupFold(d, "isDefaultGateway").(bool)
	if !isGW && !isDefGW { // the bridge plugin implies isGateway from isDefaultGateway
		return "", "", false
	}
	if force, _ := lookupFold(d, "forceAddress").(bool); force {
		return "", "", false
	}
	bridge, _ = lookupFold(d, "bridge").(string)
	if bridge == "" {
		bridge = defaultBridgeName
	}
	if strings.ContainsAny(bridge, "/ ") {
		return "", "", false // not an interface name; the bridge plugin rejects it
	}
	return bridge, hostLocalDir(d), true
}

// hostLocalDir is the host-local directory holding the rendered delegate
// d's reservations, "" when its IPAM is not host-local.
func hostLocalDir(d map[string]any) string {
	ipam, _ := d["ipam"].(map[string]any)
	if t, _ := lookupFold(ipam, "type").(string); t != defaultIPAMType {
		return ""
	}
	dir, _ := lookupFold(ipam, "dataDir").(string)
	if dir == "" {
		dir = defaultIPAMDataDir
	}
	name, _ := d["name"].(string)
	return filepath.Join(dir, name)
}

func lookupFold(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if strings.EqualFold(k, key) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	// The delegate receives the keys sorted and encoding/json lets the last
	// match win.
	sort.Strings(keys)
	return m[keys[len(keys)-1]]
}
