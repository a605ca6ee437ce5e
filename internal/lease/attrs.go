package lease

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
)

// MarshalJSON renders flannel's exact field names and order: PublicIP
// (always; "0.0.0.0" when unset), PublicIPv6 (a string or null, never
// omitted), then BackendType, BackendData and BackendV6Data, each omitted
// when empty. Backend data is emitted compacted; a JSON null counts as empty.
func (a Attrs) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"PublicIP":"`)
	if a.PublicIP.IsValid() {
		if !a.PublicIP.Unmap().Is4() {
			return nil, fmt.Errorf("encode lease attributes: PublicIP %s is not an IPv4 address", a.PublicIP)
		}
		buf.WriteString(a.PublicIP.Unmap().String())
	} else {
		buf.WriteString("0.0.0.0")
	}
	buf.WriteString(`","PublicIPv6":`)
	if a.PublicIPv6.IsValid() {
		if !a.PublicIPv6.Is6() || a.PublicIPv6.Is4In6() || a.PublicIPv6.Zone() != "" {
			return nil, fmt.Errorf("encode lease attributes: PublicIPv6 %s is not an IPv6 address", a.PublicIPv6)
		}
		buf.WriteString(`"` + addrString(a.PublicIPv6) + `"`)
	} else {
		buf.WriteString("null")
	}
	if a.BackendType != "" {
		bt, err := json.Marshal(a.BackendType)
		if err != nil {
			return nil, fmt.Errorf("encode lease attributes: BackendType %q: %w", a.BackendType, err)
		}
		buf.WriteString(`,"BackendType":`)
		buf.Write(bt)
	}
	for _, f := range []struct {
		name string
		data json.RawMessage
	}{{"BackendData", a.BackendData}, {"BackendV6Data", a.BackendV6Data}} {
		if isEmptyJSON(f.data) {
			continue
		}
		buf.WriteString(`,"` + f.name + `":`)
		if err := json.Compact(&buf, f.data); err != nil {
			return nil, fmt.Errorf("encode lease attributes: %s %q is not valid JSON: %w", f.name, f.data, err)
		}
	}
	// weft's own field goes last and only when set: without it the JSON
	// is flannel's byte for byte, and flannel, which decodes into a struct
	// with encoding/json, ignores it when it is there.
	if a.HostID != "" {
		if !ValidHostID(a.HostID) {
			return nil, fmt.Errorf("encode lease attributes: WeftHostID %q is not 1 to %d letters, digits, '-' or '_'", a.HostID, maxHostID)
		}
		buf.WriteString(`,"WeftHostID":"` + a.HostID + `"`)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON accepts flannel's JSON with encoding/json semantics (keys
// match case-insensitively, unknown keys are ignored). A missing BackendType
// is fine: flannel's udp and alloc backends publish none. PublicIP "0.0.0.0"
// or absent decodes to the zero Addr, so that zero Attrs survive a round
// trip; a JSON null backend data decodes to nil.
func (a *Attrs) UnmarshalJSON(b []byte) error {
	var w struct {
		PublicIP      *string
		PublicIPv6    *string
		BackendType   string
		BackendData   json.RawMessage
		BackendV6Data json.RawMessage
		WeftHostID    json.RawMessage
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode lease attributes %q: %w", truncate(b), err)
	}
	var out Attrs
	if w.PublicIP != nil {
		ip, err := netip.ParseAddr(*w.PublicIP)
		if err != nil || !ip.Unmap().Is4() {
			return fmt.Errorf("decode lease attributes: PublicIP %q is not an IPv4 address", *w.PublicIP)
		}
		if ip = ip.Unmap(); !ip.IsUnspecified() {
			out.PublicIP = ip
		}
	}
	if w.PublicIPv6 != nil {
		ip, err := netip.ParseAddr(*w.PublicIPv6)
		// A zone or an IPv4-mapped form would not survive the encoding
		// (flannel's net.IP has neither), so the lease would change
		// under a round trip: refused like any other non-IPv6 value.
		if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
			return fmt.Errorf("decode lease attributes: PublicIPv6 %q is not an IPv6 address", *w.PublicIPv6)
		}
		out.PublicIPv6 = ip
	}
	out.BackendType = w.BackendType
	var err error
	if out.BackendData, err = compactJSON(w.BackendData); err != nil {
		return fmt.Errorf("decode lease attributes: BackendData: %w", err)
	}
	if out.BackendV6Data, err = compactJSON(w.BackendV6Data); err != nil {
		return fmt.Errorf("decode lease attributes: BackendV6Data: %w", err)
	}
	out.HostID = decodeHostID(w.WeftHostID)
	*a = out
	return nil
}

// Equal reports whether a and b publish the same thing. Backend data are
// compared as JSON values, so key order and white space do not matter, and
// null equals absent.
func (a Attrs) Equal(b Attrs) bool {
	return a.PublicIP == b.PublicIP &&
		a.PublicIPv6 == b.PublicIPv6 &&
		a.BackendType == b.BackendType &&
		jsonEqual(a.BackendData, b.BackendData) &&
		jsonEqual(a.BackendV6Data, b.BackendV6Data) &&
		a.HostID == b.HostID
}

// maxHostID bounds a host ID's length.
const maxHostID = 64

// ValidHostID reports whether id can be a WeftHostID: 1 to 64 ASCII
// letters, digits, '-' or '_', so that it needs no escaping and reads in a
// log line.
func ValidHostID(id string) bool {
	if id == "" || len(id) > maxHostID {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// decodeHostID returns the WeftHostID of a lease, or "" when it has none
// or one weft would not write. A malformed one is ignored rather than
// refused: flannel ignores the field, so a lease flannel hosts program must
// not be dropped here for it; without an ID the lease is only what it is
// to flannel.
func decodeHostID(raw json.RawMessage) string {
	var id string
	if len(raw) == 0 || json.Unmarshal(raw, &id) != nil || !ValidHostID(id) {
		return ""
	}
	return id
}

// addrString formats an address the way Go's net.IP.String does, which is
// what flannel writes into keys and values: IPv4-mapped IPv6 addresses in
// dotted form and no zone.
func addrString(a netip.Addr) string {
	return a.Unmap().WithZone("").String()
}

func isEmptyJSON(m json.RawMessage) bool {
	t := bytes.TrimSpace(m)
	return len(t) == 0 || string(t) == "null"
}

func compactJSON(m json.RawMessage) (json.RawMessage, error) {
	if isEmptyJSON(m) {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m); err != nil {
		return nil, err
	}
	return json.RawMessage(buf.Bytes()), nil
}

func jsonEqual(a, b json.RawMessage) bool {
	if isEmptyJSON(a) || isEmptyJSON(b) {
		return isEmptyJSON(a) == isEmptyJSON(b)
	}
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
