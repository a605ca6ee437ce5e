package subnetenv

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weftnet/weft/internal/atomicfile"
)

// Marshal renders flannel's exact lines and order:
//
//	FLANNEL_NETWORK=      when Networks is set (comma-joined if several)
//	FLANNEL_SUBNET=       when Subnet is set, as its first host address
//	FLANNEL_IPV6_NETWORK= when IPv6Network is set
//	FLANNEL_IPV6_SUBNET=  when IPv6Subnet is set, as its first host address
//	FLANNEL_MTU=
//	FLANNEL_IPMASQ=       true or false
//
// Each line is KEY=VALUE and a newline, without quotes.
func Marshal(e Env) []byte {
	var b bytes.Buffer
	line := func(k, v string) { b.WriteString(k + "=" + v + "\n") }
	if len(e.Networks) > 0 {
		line("FLANNEL_NETWORK", joinPrefixes(e.Networks))
	}
	if e.Subnet.IsValid() {
		line("FLANNEL_SUBNET", firstHost(e.Subnet))
	}
	if len(e.IPv6Network) > 0 {
		line("FLANNEL_IPV6_NETWORK", joinPrefixes(e.IPv6Network))
	}
	if e.IPv6Subnet.IsValid() {
		line("FLANNEL_IPV6_SUBNET", firstHost(e.IPv6Subnet))
	}
	line("FLANNEL_MTU", strconv.Itoa(e.MTU))
	line("FLANNEL_IPMASQ", strconv.FormatBool(e.IPMasq))
	return b.Bytes()
}

// firstHost renders 172.7.21.0/24 as 172.7.21.1/24: the address the CNI
// plugin and docker --bip give the bridge.
func firstHost(p netip.Prefix) string {
	p = p.Masked()
	next := p.Addr().Next()
	if !p.Contains(next) {
		// A /32 (or /128) has no address after its own: the next one
		// would read back as another subnet (found by FuzzRead).
		return p.String()
	}
	return netip.PrefixFrom(next, p.Bits()).String()
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Write writes the file atomically (temp file in the same directory, fsync,
// rename, fsync of the directory), mode 0644, creating the directory
// (0755) if needed. Readers see either the old file or the new one, never a
// part.
func Write(path string, e Env) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: create directory: %w", path, err)
	}
	// The CNI plugin and docker helpers may run as other users, and
	// flannel's file is 0644.
	return atomicfile.Write(path, Marshal(e), 0o644)
}

// Read parses a subnet.env. A missing file yields an error wrapping
// fs.ErrNotExist. It is tolerant of what people and other tools write:
// blank lines, # comments, an "export " prefix, quoted values, unknown keys
// (ignored), comma-separated lists in the NETWORK keys (as flannel's CNI
// plugin accepts), empty values (as if absent) and a FLANNEL_SUBNET with
// host bits (the +1 form flannel writes), which is stored masked. Malformed
// values are errors that name the key and the file. If a key repeats, the
// last one counts.
func Read(path string) (Env, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Env{}, fmt.Errorf("read subnet file: %w", err)
	}
	return parse(path, data)
}

// parse is Read after the file is read; path only names it in errors.
func parse(path string, data []byte) (Env, error) {
	var e Env
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return Env{}, fmt.Errorf("read %s: line %d %q is not KEY=VALUE", path, n+1, line)
		}
		key, val = strings.TrimSpace(key), unquote(strings.TrimSpace(val))
		if val == "" {
			continue
		}
		if err := e.set(key, val); err != nil {
			return Env{}, fmt.Errorf("read %s: %s=%q: %w", path, key, val, err)
		}
	}
	return e, nil
}

func (e *Env) set(key, val string) error {
	var err error
	switch key {
	case "FLANNEL_NETWORK":
		e.Networks, err = parseList(val, false)
	case "FLANNEL_IPV6_NETWORK":
		e.IPv6Network, err = parseList(val, true)
	case "FLANNEL_SUBNET":
		e.Subnet, err = parsePrefix(val, false)
	case "FLANNEL_IPV6_SUBNET":
		e.IPv6Subnet, err = parsePrefix(val, true)
	case "FLANNEL_MTU":
		e.MTU, err = strconv.Atoi(val)
		if err == nil && e.MTU <= 0 {
			err = fmt.Errorf("MTU must be positive")
		}
	case "FLANNEL_IPMASQ":
		e.IPMasq, err = strconv.ParseBool(val)
	}
	return err
}

func parseList(val string, v6 bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(val, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := parsePrefix(s, v6)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// parsePrefix parses a CIDR of the given family and masks it.
func parsePrefix(s string, v6 bool) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is6() != v6 {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		return netip.Prefix{}, fmt.Errorf("%s is not an %s prefix", s, fam)
	}
	return p.Masked(), nil
}

// unquote strips one pair of matching surrounding quotes, or an inline
// " #" comment from an unquoted value, as shell-style env readers do.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	if i := strings.Index(v, " #"); i >= 0 {
		return strings.TrimSpace(v[:i])
	}
	return v
}
