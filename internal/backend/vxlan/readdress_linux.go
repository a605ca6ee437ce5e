package vxlan

import "fmt"

// Readdress gives the device a new random VTEP MAC because a peer
// publishes this one (both hosts came from one image with its state
// directory). The new MAC is persisted first, so that a crash between the
// steps never brings the old one back, then set on the device; LeaseAttrs
// returns it for the agent to republish. The kernel entries of peers stay:
// they name the peers' MACs, not ours.
//
// The IPv6 side's MAC is replaced with the IPv4 one's: a copied state
// directory copied both, and the agent compares the IPv4 MAC only. On an
// IPv6-only network it is the IPv6 side's MAC that is replaced.
func (b *Backend) Readdress() (string, string, error) {
	if b.noIPv4 {
		return b.v6.readdress()
	}
	old, mac, err := b.readdress()
	if err != nil || b.v6 == nil {
		return old, mac, err
	}
	if _, _, err := b.v6.readdress(); err != nil {
		return old, mac, err
	}
	return old, mac, nil
}

func (b *Backend) readdress() (string, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.mac
	mac := randomMAC()
	for mac == old {
		mac = randomMAC()
	}
	if b.macFile != "" {
		if err := writeMACFile(b.macFile, mac); err != nil {
			return old.String(), "", fmt.Errorf("vxlan: persist the new VTEP MAC %s to %s: %w", mac, b.macFile, err)
		}
	}
	b.mac = mac
	b.data = leaseData(b.set.VNI, mac)
	// The next Apply reads the kernel instead of trusting the plan of the
	// last one.
	b.inst.valid = false
	_, changes, err := b.ensureDevice()
	b.logDevice(changes, "readdress")
	if err != nil {
		return old.String(), mac.String(), fmt.Errorf("vxlan: set the new VTEP MAC %s on %s: %w", mac, b.dev, err)
	}
	return old.String(), mac.String(), nil
}
