// Package dockeropts turns subnet.env into Docker daemon options, as
// flannel's dist/mk-docker-opts.sh does, so that `weft docker-opts` can
// replace the script in a unit's ExecStartPost= and the docker drop-ins
// that read /run/docker_opts.env keep working unchanged.
//
// # Output contract
//
// This is the byte-level contract, taken from the current /bin/sh version
// of the script (the one with the routing-table check). Render implements
// it; the golden tests hold it.
//
// The input is the set of variables the script sees after sourcing the
// subnet file: the process environment, overlaid by the file's assignments.
//
//  1. DOCKER_OPT_BIP is "--bip=" + FLANNEL_SUBNET when FLANNEL_SUBNET is
//     non-empty; DOCKER_OPT_MTU is "--mtu=" + FLANNEL_MTU when FLANNEL_MTU is
//     non-empty. Unless -m is given, FLANNEL_IPMASQ "true" makes
//     DOCKER_OPT_IPMASQ "--ip-masq=false" (weft masquerades, so docker must
//     not), "false" makes it "--ip-masq=true", empty leaves it unset, and any
//     other value is an error and nothing is written.
//  2. The options are all variables whose names start with DOCKER_OPT_,
//     including any already in the environment (the three above replace
//     environment values of the same name), in byte order of their names,
//     because the script walks the output of `set`, which shells sort. The
//     usual order is therefore BIP, IPMASQ, MTU.
//  3. With -i, each option is written as one line: NAME="VALUE" and "\n".
//  4. The combined value starts as the variable named by -k (default
//     DOCKER_OPTS) from the same input, followed by one space when it is
//     non-empty. Then, for each option in order, one space and the value are
//     appended. With -c, one line KEY="COMBINED" and "\n" follows the
//     individual lines.
//  5. Neither -i nor -c means both.
//
// For FLANNEL_SUBNET=10.244.1.1/24, FLANNEL_MTU=1450, FLANNEL_IPMASQ=true,
// DOCKER_OPTS unset and no flags, the file is exactly:
//
//	DOCKER_OPT_BIP="--bip=10.244.1.1/24"
//	DOCKER_OPT_IPMASQ="--ip-masq=false"
//	DOCKER_OPT_MTU="--mtu=1450"
//	DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"
//
// and with DOCKER_OPTS="-H fd://" in the environment and -c the one line is
// DOCKER_OPTS="-H fd://  --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"
// (two spaces: the script's own separator plus the one before each option).
//
// # Where weft differs, on purpose
//
//   - A missing subnet file is an error and nothing is written. The script
//     carries on and writes DOCKER_OPTS=" ", which starts docker on its
//     default bridge, outside the pod network.
//   - FLANNEL_SUBNET must be an IPv4 CIDR and FLANNEL_MTU a positive number;
//     the script copies whatever is there.
//   - A value holding a double quote, backslash, dollar sign, backquote or
//     line break is refused: the script would write a file that neither sh
//     nor systemd reads back as written.
//   - Option values are whitespace-collapsed the way the script's unquoted
//     echo collapses them; the script's word splitting of `set` output, which
//     breaks values holding spaces, is not reproduced.
//   - Only variables whose names begin with DOCKER_OPT_ are options; the
//     script also picks up any variable whose name or value merely contains
//     that string.
//   - -f defaults to $FLANNELD_SUBNET_FILE when set, the agent's own
//     --subnet-file, so a unit's EnvironmentFile= serves both.
//   - With FLANNEL_IPV6_SUBNET (a dual-stack or IPv6-only network),
//     DOCKER_OPT_IPV6="--ipv6" and DOCKER_OPT_FIXED_CIDR_V6=
//     "--fixed-cidr-v6=<the subnet's network>" are added, so that docker's
//     containers get addresses of the host's IPv6 subnet too. The script
//     has no equivalent: it ignores the IPv6 lines, and docker then gives
//     containers no IPv6 address of the pod network. They sort between BIP
//     and IPMASQ, and after IPMASQ, as every option does.
//   - The file is replaced atomically (temp file and rename); the script
//     truncates it and appends line by line.
//
// Like the script, after writing the file the command fails (exit 1) when
// the main routing table holds a route via a gateway for this host's own
// subnet: such a route sends traffic for local containers to another host,
// typically a stale route left from when another host held the subnet. The
// check is an exact destination match over netlink (the script greps the
// output of `ip route show`), Linux only.
package dockeropts

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Defaults, as the script has them.
const (
	DefaultSubnetFile  = "/run/flannel/subnet.env"
	DefaultOutputFile  = "/run/docker_opts.env"
	DefaultCombinedKey = "DOCKER_OPTS"
)

// optPrefix is the name prefix that makes a variable a docker option.
const optPrefix = "DOCKER_OPT_"

// Options mirror the script's flags.
type Options struct {
	SubnetFile  string // -f
	OutputFile  string // -d
	Individual  bool   // -i: write DOCKER_OPT_* lines
	Combined    bool   // -c: write the combined line
	CombinedKey string // -k
	OmitIPMasq  bool   // -m: no --ip-masq option
}

// Defaults returns the script's defaults: both kinds of output.
func Defaults() Options {
	return Options{
		SubnetFile:  DefaultSubnetFile,
		OutputFile:  DefaultOutputFile,
		CombinedKey: DefaultCombinedKey,
	}
}

// Result is what Render produced.
type Result struct {
	// File is the content for the output file.
	File []byte
	// Subnet is FLANNEL_SUBNET masked to its network (10.244.1.0/24), or
	// invalid when the input had none; the routing check looks for it.
	Subnet netip.Prefix
}

// Render computes the output file from vars, the environment overlaid by
// the subnet file's assignments (see Overlay), following the package's
// output contract. It is pure.
func Render(vars map[string]string, o Options) (Result, error) {
	if !IsShellName(o.CombinedKey) {
		return Result{}, fmt.Errorf("combined key -k %q: not a shell variable name", o.CombinedKey)
	}
	indiv, comb := o.Individual, o.Combined
	if !indiv && !comb {
		indiv, comb = true, true
	}

	opts := map[string]string{}
	for name, val := range vars {
		if strings.HasPrefix(name, optPrefix) && IsShellName(name) {
			opts[name] = val
		}
	}
	var res Result
	if s := vars["FLANNEL_SUBNET"]; s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return Result{}, fmt.Errorf("FLANNEL_SUBNET=%q: not an IPv4 CIDR such as 10.244.1.1/24", s)
		}
		res.Subnet = p.Masked()
		opts["DOCKER_OPT_BIP"] = "--bip=" + s
	}
	if s := vars["FLANNEL_IPV6_SUBNET"]; s != "" {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
			return Result{}, fmt.Errorf("FLANNEL_IPV6_SUBNET=%q: not an IPv6 CIDR such as fd00:10:244:1::1/64", s)
		}
		// Docker takes the network, not the bridge's +1 address that
		// subnet.env holds, and gives the bridge its first address.
		opts["DOCKER_OPT_IPV6"] = "--ipv6"
		opts["DOCKER_OPT_FIXED_CIDR_V6"] = "--fixed-cidr-v6=" + p.Masked().String()
	}
	if s := vars["FLANNEL_MTU"]; s != "" {
		if n, err := strconv.Atoi(s); err != nil || n <= 0 {
			return Result{}, fmt.Errorf("FLANNEL_MTU=%q: not a positive number", s)
		}
		opts["DOCKER_OPT_MTU"] = "--mtu=" + s
	}
	if s := vars["FLANNEL_IPMASQ"]; s != "" && !o.OmitIPMasq {
		switch s {
		case "true":
			opts["DOCKER_OPT_IPMASQ"] = "--ip-masq=false"
		case "false":
			opts["DOCKER_OPT_IPMASQ"] = "--ip-masq=true"
		default:
			return Result{}, fmt.Errorf("FLANNEL_IPMASQ=%q: must be true or false", s)
		}
	}

	names := make([]string, 0, len(opts))
	for name := range opts {
		names = append(names, name)
	}
	slices.Sort(names)

	var b bytes.Buffer
	combined := vars[o.CombinedKey]
	if err := checkValue(o.CombinedKey, combined); err != nil {
		return Result{}, err
	}
	if combined != "" {
		combined += " "
	}
	for _, name := range names {
		val := collapse(opts[name])
		if err := checkValue(name, val); err != nil {
			return Result{}, err
		}
		if indiv {
			b.WriteString(name + `="` + val + "\"\n")
		}
		combined += " " + val
	}
	if comb {
		b.WriteString(o.CombinedKey + `="` + combined + "\"\n")
	}
	res.File = b.Bytes()
	return res, nil
}

// collapse joins the blank-separated words of v with single spaces, as an
// unquoted shell expansion passed to echo does.
func collapse(v string) string {
	return strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' }), " ")
}

// checkValue refuses what cannot stand between double quotes in a file
// that both sh and systemd's EnvironmentFile= read.
func checkValue(name, val string) error {
	if i := strings.IndexAny(val, "\"\\$`\n\r"); i >= 0 {
		return fmt.Errorf("%s=%q: %q cannot be written inside double quotes for docker", name, val, val[i])
	}
	return nil
}

// IsShellName reports whether s is a valid shell variable name.
func IsShellName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ParseEnvFile reads KEY=VALUE assignments the way sourcing the file sets
// them for the script, tolerating what people write into subnet.env: blank
// lines, # comments, an "export " prefix and one pair of surrounding
// quotes. Other lines are errors naming the line.
func ParseEnvFile(data []byte) (map[string]string, error) {
	vars := map[string]string{}
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !IsShellName(key) {
			return nil, fmt.Errorf("line %d %q: not a KEY=VALUE assignment", n+1, line)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		vars[key] = val
	}
	return vars, nil
}

// Overlay builds Render's input from the process environment (KEY=VALUE
// strings, as os.Environ returns them) and the subnet file's variables,
// which win, as a sourced file's assignments do.
func Overlay(environ []string, file map[string]string) map[string]string {
	vars := make(map[string]string, len(environ)+len(file))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && IsShellName(k) {
			vars[k] = v
		}
	}
	for k, v := range file {
		vars[k] = v
	}
	return vars
}

// ErrRouteConflict marks the failure of the routing check: the file was
// written, but the host has a route via a gateway for its own subnet.
var ErrRouteConflict = errors.New("the routing table already has a route via a gateway for this host's subnet")
