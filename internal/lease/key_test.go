package lease

import (
	"net/netip"
	"strings"
	"testing"
)

func TestKeyName(t *testing.T) {
	tests := []struct {
		v4, v6 string
		want   string
	}{
		{"10.5.52.0/24", "", "10.5.52.0-24"},
		{"172.7.21.0/24", "", "172.7.21.0-24"},
		{"10.5.1.0/24", "fc00::/64", "10.5.1.0-24&fc00::-64"},
		{"10.12.13.0/24", "fd00:12:13::/56", "10.12.13.0-24&fd00:12:13::-56"},
		{"10.0.0.128/25", "2001:db8:0:ab00::/56", "10.0.0.128-25&2001:db8:0:ab00::-56"},
	}
	for _, tt := range tests {
		v4 := netip.MustParsePrefix(tt.v4)
		var v6 netip.Prefix
		if tt.v6 != "" {
			v6 = netip.MustParsePrefix(tt.v6)
		}
		if got := KeyName(v4, v6); got != tt.want {
			t.Errorf("KeyName(%s, %s) = %q, want %q", tt.v4, tt.v6, got, tt.want)
		}
		g4, g6, err := ParseKeyName(tt.want)
		if err != nil {
			t.Errorf("ParseKeyName(%q): %v", tt.want, err)
			continue
		}
		if g4 != v4 || g6 != v6 {
			t.Errorf("ParseKeyName(%q) = %s, %s, want %s, %s", tt.want, g4, g6, v4, v6)
		}
	}
}

func TestParseKeyNameRejects(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "not of the form"},
		{"config", "not of the form"},
		{"10.5.1.0/24", "not of the form"},
		{"x10.5.1.0-24", "not of the form"},
		{"10.5.1.0-24x", "not of the form"},
		{"10.5.1.7-24", "host bits set (subnet would be 10.5.1.0/24)"},
		{"10.5.01.0-24", "address"},
		{"300.5.1.0-24", "address"},
		{"10.5.1.0-33", "out of range"},
		{"10.5.1.0-024", "canonical"},
		{"10.5.1.0-99999999999999999999", "out of range"},
		{"10.5.1.0-24&FC00::-64", "not of the form"},
		{"10.5.1.0-24&fc00:0::-64", "canonical"},
		{"10.5.1.0-24&fc00::1-64", "host bits"},
		{"10.5.1.0-24&fc00::-129", "out of range"},
		{"10.5.1.0-24&-64", "not of the form"},
	}
	for _, tt := range tests {
		_, _, err := ParseKeyName(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.in) {
			t.Errorf("ParseKeyName(%q) error = %v, want one naming the key and containing %q", tt.in, err, tt.want)
		}
	}
}
