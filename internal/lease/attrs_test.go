package lease

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestAttrsMarshalGolden(t *testing.T) {
	tests := []struct {
		name string
		in   Attrs
		want string
	}{
		{
			name: "host-gw",
			in:   Attrs{PublicIP: netip.MustParseAddr("10.4.7.21"), BackendType: "host-gw"},
			want: `{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"host-gw"}`,
		},
		{
			name: "vxlan, backend data compacted",
			in: Attrs{PublicIP: netip.MustParseAddr("192.168.64.3"), BackendType: "vxlan",
				BackendData: json.RawMessage("{\n  \"VNI\": 1,\n  \"VtepMAC\": \"c6:d2:32:6f:8f:44\"\n}")},
			want: `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
		},
		{
			name: "zero",
			in:   Attrs{},
			want: `{"PublicIP":"0.0.0.0","PublicIPv6":null}`,
		},
		{
			name: "null backend data is omitted",
			in:   Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "host-gw", BackendData: json.RawMessage("null")},
			want: `{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"host-gw"}`,
		},
		{
			name: "dual stack",
			in: Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), PublicIPv6: netip.MustParseAddr("FC00:0:0::1"), BackendType: "vxlan",
				BackendData:   json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`),
				BackendV6Data: json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:fe"}`)},
			want: `{"PublicIP":"10.0.0.1","PublicIPv6":"fc00::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"},"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:fe"}}`,
		},
		{
			name: "udp lease without BackendType",
			in:   Attrs{PublicIP: netip.MustParseAddr("10.0.0.2")},
			want: `{"PublicIP":"10.0.0.2","PublicIPv6":null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Through json.Marshal, both as a value and a pointer, the way stores call it.
			for _, v := range []any{tt.in, &tt.in} {
				got, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				if string(got) != tt.want {
					t.Errorf("Marshal(%T)\n got %s\nwant %s", v, got, tt.want)
				}
			}
			var back Attrs
			if err := json.Unmarshal([]byte(tt.want), &back); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.want, err)
			}
			again, err := json.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != tt.want {
				t.Errorf("round trip\n got %s\nwant %s", again, tt.want)
			}
			if !back.Equal(tt.in) {
				t.Errorf("round trip: %+v is not Equal to %+v", back, tt.in)
			}
		})
	}
}

func TestAttrsMarshalErrors(t *testing.T) {
	for _, a := range []Attrs{
		{PublicIP: netip.MustParseAddr("fc00::1")},
		{PublicIP: netip.MustParseAddr("10.0.0.1"), PublicIPv6: netip.MustParseAddr("10.0.0.2")},
		{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendData: json.RawMessage(`{"VNI":`)},
	} {
		if b, err := json.Marshal(a); err == nil {
			t.Errorf("Marshal(%+v) = %s, want an error", a, b)
		}
	}
}

func TestAttrsUnmarshal(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Attrs
	}{
		{
			name: "flannel vxlan",
			in:   `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}`,
			want: Attrs{PublicIP: netip.MustParseAddr("192.168.64.3"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`)},
		},
		{
			name: "flannel udp lease has no BackendType",
			in:   `{"PublicIP":"10.4.7.22","PublicIPv6":null}`,
			want: Attrs{PublicIP: netip.MustParseAddr("10.4.7.22")},
		},
		{
			name: "old flannel without PublicIPv6",
			in:   `{"PublicIP":"10.4.7.22","BackendType":"host-gw"}`,
			want: Attrs{PublicIP: netip.MustParseAddr("10.4.7.22"), BackendType: "host-gw"},
		},
		{
			name: "keys case-insensitive, unknown ignored, whitespace",
			in:   "{ \"publicip\": \"10.0.0.9\", \"backendtype\": \"vxlan\", \"Extra\": 3, \"backenddata\": { \"VNI\" : 7 } }",
			want: Attrs{PublicIP: netip.MustParseAddr("10.0.0.9"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":7}`)},
		},
		{
			name: "0.0.0.0 is unset",
			in:   `{"PublicIP":"0.0.0.0","PublicIPv6":null}`,
			want: Attrs{},
		},
		{
			name: "IPv6 public address",
			in:   `{"PublicIP":"10.0.0.1","PublicIPv6":"fc00::1","BackendType":"vxlan","BackendV6Data":{"VNI":1}}`,
			want: Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), PublicIPv6: netip.MustParseAddr("fc00::1"), BackendType: "vxlan", BackendV6Data: json.RawMessage(`{"VNI":1}`)},
		},
		{
			name: "BackendData null",
			in:   `{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}`,
			want: Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "host-gw"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Attrs
			if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if got.PublicIP != tt.want.PublicIP || got.PublicIPv6 != tt.want.PublicIPv6 || got.BackendType != tt.want.BackendType ||
				string(got.BackendData) != string(tt.want.BackendData) || string(got.BackendV6Data) != string(tt.want.BackendV6Data) {
				t.Errorf("Unmarshal(%s)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestAttrsUnmarshalErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`garbage`, "decode lease attributes"},
		{`[1,2]`, "decode lease attributes"},
		{`{"PublicIP":"10.0.0"}`, `PublicIP "10.0.0"`},
		{`{"PublicIP":"fc00::1"}`, `PublicIP "fc00::1" is not an IPv4 address`},
		{`{"PublicIP":7}`, "PublicIP"},
		{`{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.2"}`, `PublicIPv6 "10.0.0.2" is not an IPv6 address`},
	}
	for _, tt := range tests {
		var a Attrs
		if err := json.Unmarshal([]byte(tt.in), &a); err == nil {
			t.Errorf("json.Unmarshal(%s) succeeded, want an error", tt.in)
		}
		// Called directly, as a store decoding a value does, the error says what failed.
		err := a.UnmarshalJSON([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Unmarshal(%s) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func TestAttrsEqual(t *testing.T) {
	base := Attrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`)}
	same := base
	same.BackendData = json.RawMessage(`{ "VtepMAC": "aa:bb:cc:dd:ee:ff", "VNI": 1 }`)
	if !base.Equal(same) {
		t.Error("reordered backend data is not Equal")
	}
	for name, mod := range map[string]func(*Attrs){
		"PublicIP":    func(a *Attrs) { a.PublicIP = netip.MustParseAddr("10.0.0.2") },
		"PublicIPv6":  func(a *Attrs) { a.PublicIPv6 = netip.MustParseAddr("fc00::2") },
		"BackendType": func(a *Attrs) { a.BackendType = "host-gw" },
		"VtepMAC":     func(a *Attrs) { a.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:00"}`) },
		"no data":     func(a *Attrs) { a.BackendData = nil },
		"V6 data":     func(a *Attrs) { a.BackendV6Data = json.RawMessage(`{}`) },
	} {
		other := base
		mod(&other)
		if base.Equal(other) {
			t.Errorf("changing %s: still Equal", name)
		}
	}
	if !(Attrs{BackendData: json.RawMessage("null")}).Equal(Attrs{}) {
		t.Error("null backend data is not Equal to none")
	}
}
