package lease

import (
	"encoding/json"
	"testing"
)

// FuzzParseKeyName: whatever a key under <prefix>/subnets/ holds, parsing
// never panics, and what parses is exactly what KeyName writes back.
func FuzzParseKeyName(f *testing.F) {
	for _, s := range []string{
		"10.5.52.0-24", "10.5.1.0-24&fc00::-64", "10.12.13.0-24&fd00:12:13::-56",
		"10.5.0.0-24&fd00:10:244:1::-64", "10.5.1.0-24&::ffff:10.0.0.0-120",
		"10.5.1.0-24&FC00::-64", "10.5.1.0-24&fc00:0::-64", "10.5.1.7-24", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v4, v6, err := ParseKeyName(name)
		if err != nil {
			return
		}
		if got := KeyName(v4, v6); got != name {
			t.Fatalf("ParseKeyName(%q) = %s, %s, which KeyName writes as %q", name, v4, v6, got)
		}
		if !v4.Addr().Is4() || (v6.IsValid() && (!v6.Addr().Is6() || v6.Addr().Is4In6())) {
			t.Fatalf("ParseKeyName(%q) = %s, %s: wrong families", name, v4, v6)
		}
	})
}

// FuzzAttrsJSON: decoding any value never panics, and what decodes
// encodes to JSON that decodes to equal attributes, with PublicIPv6 in
// compressed form or null.
func FuzzAttrsJSON(f *testing.F) {
	for _, s := range []string{
		`{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"host-gw"}`,
		`{"PublicIP":"10.4.7.21","PublicIPv6":"fd00:0:0:1::5","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}}`,
		`{"PublicIP":"10.4.7.21","PublicIPv6":"FD00:0000::0005","BackendType":"host-gw","WeftHostID":"h1"}`,
		`{"publicipv6":"2001:db8::1"}`,
		`{"PublicIPv6":"10.1.1.1"}`,
		`{"PublicIPv6":"fe80::1%eth0"}`,
		`{"PublicIPv6":"::ffff:10.1.1.1"}`,
		`{"PublicIP":"::ffff:10.1.1.1","BackendV6Data":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Attrs
		if err := json.Unmarshal(data, &a); err != nil {
			return
		}
		out, err := json.Marshal(a)
		if err != nil {
			// Decoding accepts only what encoding can write back.
			t.Fatalf("decoded %q to %+v, which does not encode: %v", data, a, err)
		}
		var b Attrs
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		if !a.Equal(b) {
			t.Fatalf("round trip of %q: %+v became %+v via %s", data, a, b, out)
		}
		if a.PublicIPv6.IsValid() && a.PublicIPv6.String() != addrString(a.PublicIPv6) {
			t.Fatalf("PublicIPv6 %s is not written as Go's net.IP.String does", a.PublicIPv6)
		}
	})
}
