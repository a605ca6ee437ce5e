package backend

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/netconf"
)

func TestCheckConfig(t *testing.T) {
	addr := netip.MustParseAddr("192.168.1.1")
	nat := netip.MustParseAddr("203.0.113.7")
	good := func() Config {
		return Config{
			Ext:     ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr: addr},
			Network: &netconf.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24},
		}
	}
	for _, c := range []struct {
		name    string
		mod     func(*Config)
		wantErr string
		wantPub netip.Addr
	}{
		{"PublicIP defaults to Addr", func(*Config) {}, "", addr},
		{"PublicIP kept", func(c *Config) { c.Ext.PublicIP = nat }, "", nat},
		{"no network config", func(c *Config) { c.Network = nil }, "vxlan needs an IPv4 cluster Network", netip.Addr{}},
		{"no network", func(c *Config) { c.Network.Network = netip.Prefix{} }, "vxlan needs an IPv4 cluster Network", netip.Addr{}},
		{"IPv6 network", func(c *Config) { c.Network.Network = netip.MustParsePrefix("fd00:10::/56") }, "vxlan needs an IPv4 cluster Network", netip.Addr{}},
		{"no interface", func(c *Config) { c.Ext = ExternalInterface{} }, "vxlan needs an external interface", netip.Addr{}},
		{"no index", func(c *Config) { c.Ext.Index = 0 }, "vxlan needs an external interface", netip.Addr{}},
		{"no name", func(c *Config) { c.Ext.Name = "" }, "vxlan needs an external interface", netip.Addr{}},
		{"no address", func(c *Config) { c.Ext.Addr = netip.Addr{} }, "vxlan needs an IPv4 address on interface eth0", netip.Addr{}},
		{"IPv6 address", func(c *Config) { c.Ext.Addr = netip.MustParseAddr("fd00::1") }, "vxlan needs an IPv4 address on interface eth0", netip.Addr{}},
	} {
		cfg := good()
		c.mod(&cfg)
		ext, err := CheckConfig("vxlan", cfg)
		switch {
		case c.wantErr != "":
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%s: error %v, want %q", c.name, err, c.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case ext.PublicIP != c.wantPub:
			t.Errorf("%s: PublicIP %s, want %s", c.name, ext.PublicIP, c.wantPub)
		case ext.Name != cfg.Ext.Name || ext.Index != cfg.Ext.Index || ext.MTU != cfg.Ext.MTU || ext.Addr != cfg.Ext.Addr:
			t.Errorf("%s: returned %+v, want %+v with PublicIP set", c.name, ext, cfg.Ext)
		}
	}
}

// The options' period wins, then the Config's, then the backend's default.
func TestPeriod(t *testing.T) {
	for _, c := range []struct{ opt, cfg, want time.Duration }{
		{0, 0, 10 * time.Second},
		{0, time.Minute, time.Minute},
		{time.Second, time.Minute, time.Second},
		{-time.Second, 0, 10 * time.Second},
	} {
		if got := (Config{ReconcilePeriod: c.cfg}).Period(c.opt, 10*time.Second); got != c.want {
			t.Errorf("Period(%v) with Config %v = %v, want %v", c.opt, c.cfg, got, c.want)
		}
	}
}

// A failed constructor gives a Backend that is nil, not one holding a nil
// pointer.
func TestBuiltIsNilOnError(t *testing.T) {
	type failing struct{ Backend }
	if b, err := Built[*failing](nil, errors.New("no")); b != nil || err == nil {
		t.Errorf("Built = %v, %v; want nil and the error", b, err)
	}
	if b, err := Built(&failing{}, nil); b == nil || err != nil {
		t.Errorf("Built = %v, %v; want the backend", b, err)
	}
}

// An IPv6-only network: CheckConfig refuses it naming the backend (udp
// carries IPv4 underneath, as flannel's); CheckConfigIPv6Only asks for
// an IPv6Network and an IPv6 address peers reach this host at.
func TestCheckConfigIPv6Only(t *testing.T) {
	addr6 := netip.MustParseAddr("fd00:4:7::1")
	good := func() Config {
		return Config{
			Ext:     ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, Addr6: addr6},
			Network: &netconf.Config{EnableIPv6: true, IPv6Network: netip.MustParsePrefix("fd00:10:244::/56"), IPv6SubnetLen: 64},
		}
	}
	if _, err := CheckConfig("udp", good()); err == nil || !strings.Contains(err.Error(), `udp does not run an IPv6-only network ("EnableIPv4": false) in this version: use host-gw, vxlan or wireguard`) {
		t.Errorf("CheckConfig of an IPv6-only network: %v", err)
	}
	ext, err := CheckConfigIPv6Only("host-gw", good())
	if err != nil || ext.PublicIPv6 != addr6 {
		t.Errorf("CheckConfigIPv6Only: %+v, %v; want PublicIPv6 defaulted to %s", ext, err, addr6)
	}
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no IPv6Network": {func(c *Config) { c.Network.IPv6Network = netip.Prefix{} }, "host-gw needs an IPv6Network when IPv4 is disabled"},
		"no interface":   {func(c *Config) { c.Ext = ExternalInterface{} }, "host-gw needs an external interface"},
		"no address":     {func(c *Config) { c.Ext.Addr6 = netip.Addr{} }, "host-gw needs a global IPv6 address on interface eth0 (or --public-ipv6) for an IPv6-only network"},
	} {
		cfg := good()
		c.mod(&cfg)
		if _, err := CheckConfigIPv6Only("host-gw", cfg); err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
