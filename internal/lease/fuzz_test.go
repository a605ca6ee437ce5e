package lease

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// FuzzAttrs: any lease value a store hands the agent either decodes or is
// refused with an error saying which field; what decodes encodes again
// (as flannel's bytes) and decodes to the same attributes, and encoding is
// stable from then on.
func FuzzAttrs(f *testing.F) {
	f.Add(`{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"host-gw"}`)
	f.Add(`{"PublicIP":"10.4.7.21","PublicIPv6":"fc00::21","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1}}`)
	f.Add(`{"publicip":"0.0.0.0","BackendData":null}`)
	f.Add(`{"PublicIP":"::ffff:10.0.0.1"}`)
	f.Add(`{"PublicIP":7}`)
	for _, s := range []string{
		`{"PublicIP":"10.4.7.21","PublicIPv6":"fd00:0:0:1::5","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}}`,
		`{"PublicIP":"10.4.7.21","PublicIPv6":"FD00:0000::0005","BackendType":"host-gw","WeftHostID":"h1"}`,
		`{"publicipv6":"2001:db8::1"}`,
		`{"PublicIPv6":"10.1.1.1"}`,
		`{"PublicIPv6":"fe80::1%eth0"}`,
		`{"PublicIPv6":"::ffff:10.1.1.1"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var a Attrs
		// Directly, as a store's decoder reaches it: json.Unmarshal would
		// answer a syntax error itself, before Attrs sees the value.
		if err := a.UnmarshalJSON([]byte(in)); err != nil {
			if !strings.Contains(err.Error(), "lease attributes") {
				t.Fatalf("error %q does not say it was decoding lease attributes", err)
			}
			return
		}
		out, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("decoded %q into %+v, which does not encode: %v", in, a, err)
		}
		var b Attrs
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("%q re-encoded as %s, which does not decode: %v", in, out, err)
		}
		if !a.Equal(b) {
			t.Fatalf("round trip changed the attributes: %q -> %+v -> %s -> %+v", in, a, out, b)
		}
		if a.PublicIPv6.IsValid() && a.PublicIPv6.String() != addrString(a.PublicIPv6) {
			t.Fatalf("PublicIPv6 %s is not written as Go's net.IP.String does", a.PublicIPv6)
		}
		again, err := json.Marshal(b)
		if err != nil || string(again) != string(out) {
			t.Fatalf("encoding not stable: %s then %s (%v)", out, again, err)
		}
	})
}

// FuzzParseKeyName: any key under the subnets prefix is a lease key in
// canonical form or an error naming the key; a parsed key renders back to
// exactly the same string.
func FuzzParseKeyName(f *testing.F) {
	for _, s := range []string{
		"10.5.52.0-24", "10.5.1.0-24&fc00::-64", "10.5.1.7-24", "10.5.01.0-24", "10.0.0.0-33", "1.2.3.4-32&::ffff:1.2.3.4-128",
		"10.12.13.0-24&fd00:12:13::-56", "10.5.0.0-24&fd00:10:244:1::-64", "10.5.1.0-24&::ffff:10.0.0.0-120",
		"10.5.1.0-24&FC00::-64", "10.5.1.0-24&fc00:0::-64", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v4, v6, err := ParseKeyName(name)
		if err != nil {
			if !strings.Contains(err.Error(), fmt.Sprintf("lease key %q", name)) {
				t.Fatalf("error %q does not name the key %q", err, name)
			}
			return
		}
		if got := KeyName(v4, v6); got != name {
			t.Fatalf("ParseKeyName(%q) = %s, %s, which renders as %q", name, v4, v6, got)
		}
		if !v4.Addr().Is4() || v4.Masked() != v4 || (v6.IsValid() && (!v6.Addr().Is6() || v6.Addr().Is4In6() || v6.Masked() != v6)) {
			t.Fatalf("ParseKeyName(%q) = %s, %s: not subnets of the right families", name, v4, v6)
		}
	})
}
