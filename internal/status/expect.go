package status

import (
	"fmt"
	"slices"
	"strings"

	"github.com/weftnet/weft/internal/backend"
	"github.com/weftnet/weft/internal/backend/backends"
	"github.com/weftnet/weft/internal/netconf"
)

// Want is one kernel entry this host should hold. Status does not derive
// them: each backend says what it programs (backend.Expectation), and
// status compares that with the kernel.
type Want = backend.Want

// Entry kinds, as the backends name them.
const (
	KindRoute  = backend.KindRoute
	KindNeigh  = backend.KindNeigh
	KindFDB    = backend.KindFDB
	KindDevice = backend.KindDevice
	KindAddr   = backend.KindAddr
)

// expectation looks up the network's backend and asks it what it expects
// of this host. It returns a Problem instead when status cannot check the
// kernel: the backend is not one of this build, or its options are
// invalid.
func expectation(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Descriptor, backend.Expectation, *Problem) {
	d, ok := backends.Lookup(cfg.BackendType)
	if !ok {
		return d, backend.Expectation{}, &Problem{Code: CodeConfig, Message: fmt.Sprintf(
			"the network's backend %q is not one status can check (it knows %s): leases are listed, kernel entries are not checked",
			cfg.BackendType, strings.Join(slices.Sorted(slices.Values(backends.Names())), ", "))}
	}
	exp, err := d.Expect(cfg, ext)
	if err != nil {
		return d, backend.Expectation{}, &Problem{Code: CodeConfig, Message: fmt.Sprintf(
			"the network config's Backend is invalid, so no agent can start with it: %v", err)}
	}
	return d, exp, nil
}
