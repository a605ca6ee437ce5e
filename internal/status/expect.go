package status

import (
	"fmt"

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
// invalid, as the agent and weft config judge them (backends.CheckOptions).
func expectation(cfg *netconf.Config, ext backend.ExternalInterface) (backend.Descriptor, backend.Expectation, *Problem) {
	invalid := func(err error) *Problem {
		return &Problem{Code: CodeConfig, Message: fmt.Sprintf(
			"the network config is invalid, so no agent can start with it: %v. Leases are listed, kernel entries are not checked", err)}
	}
	if err := backends.CheckOptions(cfg.BackendType, cfg.Backend); err != nil {
		return backend.Descriptor{}, backend.Expectation{}, invalid(err)
	}
	d, _ := backends.Lookup(cfg.BackendType)
	exp, err := d.Expect(cfg, ext)
	if err != nil {
		return d, backend.Expectation{}, invalid(err)
	}
	return d, exp, nil
}
