package netns_test

import (
	"net"
	"testing"

	vns "github.com/vishvananda/netns"

	"github.com/weftnet/weft/internal/netns"
	"github.com/weftnet/weft/internal/nstest"
)

// TestDoHandleRunsInTheNamespace sees, from inside DoHandle, the links of
// a fresh namespace (the veth added there), and from
// the caller's goroutine afterwards its own namespace again.
func TestDoHandleRunsInTheNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	name := nstest.NewNS(t, "nd")
	nstest.Exec(t, name, "ip", "link", "add", "inside0", "type", "veth", "peer", "name", "inside1")
	h, err := vns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	has := func(name string) bool {
		_, err := net.InterfaceByName(name)
		return err == nil
	}
	var inside bool
	if err := netns.DoHandle(&h, func() error { inside = has("inside0"); return nil }); err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Error("inside0 not seen from within DoHandle")
	}
	if has("inside0") {
		t.Error("inside0 seen outside DoHandle: the caller was left in the namespace")
	}
	ran := false
	if err := netns.DoHandle(nil, func() error { ran = has("lo"); return nil }); err != nil || !ran {
		t.Errorf("DoHandle(nil) = %v, ran %v; want fn run in the caller's namespace", err, ran)
	}
}
