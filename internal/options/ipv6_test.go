package options

import "testing"

func TestPublicIPv6FlagAndEnv(t *testing.T) {
	o, _, err := Parse("flanneld", nil, env(map[string]string{"FLANNELD_PUBLIC_IPV6": "2001:db8::7"}))
	if err != nil || o.PublicIPv6 != "2001:db8::7" {
		t.Fatalf("FLANNELD_PUBLIC_IPV6: PublicIPv6 = %q, %v", o.PublicIPv6, err)
	}
	o, _, err = Parse("flanneld", []string{"--public-ipv6=fd00::1"}, env(map[string]string{"FLANNELD_PUBLIC_IPV6": "2001:db8::7"}))
	if err != nil || o.PublicIPv6 != "fd00::1" {
		t.Fatalf("--public-ipv6 over env: PublicIPv6 = %q, %v", o.PublicIPv6, err)
	}
}
