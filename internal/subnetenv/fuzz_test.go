package subnetenv

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzRead: any subnet.env (written by flannel, weft, a person or a broken
// tool) is read or refused with an error naming the file; what is read
// and carries an MTU (as every writer's file does) is written back by
// Marshal to a file that reads the same.
func FuzzRead(f *testing.F) {
	f.Add("FLANNEL_NETWORK=172.7.0.0/16\nFLANNEL_SUBNET=172.7.21.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
	f.Add("FLANNEL_NETWORK=10.0.0.0/16,10.1.0.0/16\nFLANNEL_SUBNET=10.0.5.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n")
	f.Add("# comment\nexport FLANNEL_SUBNET=\"10.1.2.1/24\"\nFLANNEL_MTU=1500 # inline\nOTHER=x\n")
	f.Add("FLANNEL_SUBNET=10.1.2.1\n")
	f.Add("FLANNEL_MTU=-1\n")
	// parse is Read without the file: the disk would slow the fuzzer down
	// a hundredfold. TestReadTolerant and TestReadErrors cover Read.
	const path = "/run/flannel/subnet.env"
	f.Fuzz(func(t *testing.T, text string) {
		e, err := parse(path, []byte(text))
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if e.MTU == 0 {
			return // no writer omits the MTU, and Marshal always writes one
		}
		out := Marshal(e)
		again, err := parse(path, out)
		if err != nil {
			t.Fatalf("%q read as %+v, written as %q, which does not read: %v", text, e, out, err)
		}
		if !reflect.DeepEqual(e, again) {
			t.Fatalf("round trip changed the file's meaning: %q -> %+v -> %q -> %+v", text, e, out, again)
		}
	})
}
