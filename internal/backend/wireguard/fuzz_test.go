package wireguard

import (
	"encoding/json"
	"testing"
)

// The options parser never panics, and what it accepts is within the
// ranges flannel's options allow.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"ListenPort":51820,"PSK":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","PersistentKeepaliveInterval":25,"MTU":1500,"Mode":"auto"}`,
		`{"Mode":"ipv6"}`, `{"listenport":-1}`, `[1]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := parseOptions(json.RawMessage(raw))
		if err != nil {
			return
		}
		if s.ListenPort < 1 || s.ListenPort > 65535 || s.PersistentKeepaliveInterval < 0 || s.PersistentKeepaliveInterval > 65535 ||
			(s.MTU != 0 && s.MTU-Overhead < 68) || (s.PSK != "" && s.psk.IsZero() && s.PSK != Key{}.String()) ||
			(s.Mode != ModeSeparate && s.Mode != ModeAuto && s.Mode != ModeIPv4 && s.Mode != ModeIPv6) {
			t.Errorf("accepted %s as %+v", raw, s)
		}
	})
}

// The BackendData decoder never panics, decodes BackendV6Data alike, and
// a key it accepts encodes back to lease data that decodes to the same key
// and port.
func FuzzParsePeerData(f *testing.F) {
	for _, s := range []string{`{"PublicKey":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","Port":51820}`,
		`{"PublicKey":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}`, `{}`, `null`, `{"PublicKey":"x","Port":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := ParsePeerData(json.RawMessage(raw))
		d6, err6 := ParsePeerV6Data(json.RawMessage(raw))
		if (err == nil) != (err6 == nil) || d6 != d {
			t.Fatalf("%s: BackendData %+v, %v; BackendV6Data %+v, %v", raw, d, err, d6, err6)
		}
		if err != nil {
			return
		}
		if d.Key.IsZero() || d.Port < 0 || d.Port > 65535 {
			t.Fatalf("accepted %s as %+v", raw, d)
		}
		again, err := ParsePeerData(leaseData(d.Key, d.Port))
		if err != nil || again != d {
			t.Errorf("%s: round trip %+v → %+v, %v", raw, d, again, err)
		}
	})
}

// The device status parser never panics.
func FuzzParseIpcGet(f *testing.F) {
	f.Add("public_key=0101010101010101010101010101010101010101010101010101010101010101\nendpoint=1.2.3.4:5\nlast_handshake_time_sec=1\nallowed_ip=10.0.0.0/24\nerrno=0\n")
	f.Add("errno=0\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = ParseIpcGet(text)
	})
}
