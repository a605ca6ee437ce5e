package lease

import (
	"encoding/json"
	"net/netip"
	"testing"
)

// The host ID goes last and only when set, so a lease without one is
// flannel's JSON byte for byte; flannel's decoder (encoding/json into a
// struct without the field) reads the one with it unchanged.
func TestHostIDJSON(t *testing.T) {
	base := Attrs{PublicIP: netip.MustParseAddr("10.4.7.21"), BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}`)}
	flannel := `{"PublicIP":"10.4.7.21","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}`
	got, err := json.Marshal(base)
	if err != nil || string(got) != flannel {
		t.Fatalf("without a host ID: %s, %v; want %s", got, err, flannel)
	}
	with := base
	with.HostID = "3f2a0c9e1b7d4a6f8e5c2b1a0d9f8e7c"
	got, err = json.Marshal(with)
	want := flannel[:len(flannel)-1] + `,"WeftHostID":"3f2a0c9e1b7d4a6f8e5c2b1a0d9f8e7c"}`
	if err != nil || string(got) != want {
		t.Fatalf("with a host ID: %s, %v; want %s", got, err, want)
	}
	var back Attrs
	if err := json.Unmarshal(got, &back); err != nil || !back.Equal(with) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	// What flannel decodes it into: its LeaseAttrs has no such field.
	var fl struct {
		PublicIP    string
		PublicIPv6  *string
		BackendType string
		BackendData json.RawMessage
	}
	if err := json.Unmarshal(got, &fl); err != nil || fl.PublicIP != "10.4.7.21" || fl.BackendType != "vxlan" || string(fl.BackendData) != `{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}` {
		t.Fatalf("flannel's view: %+v, %v", fl, err)
	}
	if base.Equal(with) {
		t.Error("Equal ignores the host ID")
	}
	with.HostID = `bad"id`
	if _, err := json.Marshal(with); err == nil {
		t.Error("an ID needing escapes was encoded")
	}
}

// A lease without the field (flannel, older weft) decodes with no ID; a
// malformed one is ignored, never a reason to drop a lease flannel accepts.
func TestHostIDDecodeTolerates(t *testing.T) {
	for in, want := range map[string]string{
		`{"PublicIP":"10.0.0.1","PublicIPv6":null}`:                             "",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":"abc-1_2"}`:      "abc-1_2",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"wefthostid":"abc"}`:          "abc",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":5}`:              "",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":null}`:           "",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":""}`:             "",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":"a b"}`:          "",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":{"x":1}}`:        "",
		`{"PublicIP":"10.0.0.1","PublicIPv6":null,"WeftHostID":"` + long + `"}`: "",
	} {
		var a Attrs
		if err := json.Unmarshal([]byte(in), &a); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if a.HostID != want || a.PublicIP != netip.MustParseAddr("10.0.0.1") {
			t.Errorf("%s: HostID %q, want %q", in, a.HostID, want)
		}
	}
}

const long = "0123456789012345678901234567890123456789012345678901234567890123456789"
