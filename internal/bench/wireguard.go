package bench

import "fmt"

// wireguardTargets judges the wireguard backend against issue 15's goals:
// one TCP stream at ≥ 0.25× kernel VXLAN, and ≥ 1.0× a standalone
// wireguard-go process doing the same job (its Reference). Nothing when
// the run measured no wireguard.
func wireguardTargets(d *DataPath) []Target {
	if d == nil {
		return nil
	}
	wg, ok := d.Backend(PathWireGuard)
	if !ok {
		return nil
	}
	var ts []Target
	judge := func(name, want, got string, met, measured bool) {
		t := Target{Name: name, Want: want, Got: got}
		if measured {
			t.Met = &met
		}
		ts = append(ts, t)
	}
	if vx, ok := d.Backend(PathVXLAN); ok {
		v := pairedRatios(wg, vx)
		judge("wireguard TCP 1 stream vs kernel vxlan (issue 15)", "≥ 0.25×",
			fmt.Sprintf("%s (%s vs %s)", f("%.3f×", v.TCP1), f("%.2f Gbit/s", wg.Median.TCP1Gbps), f("%.2f Gbit/s", vx.Median.TCP1Gbps)),
			v.TCP1 >= 0.25, v.TCP1.OK())
	} else {
		judge("wireguard TCP 1 stream vs kernel vxlan (issue 15)", "≥ 0.25×", "-", false, false)
	}
	if wg.VsReference != nil && wg.Reference == PathWireGuardGo {
		v := *wg.VsReference
		judge("wireguard TCP vs standalone wireguard-go (issue 15)", "≥ 1.0×",
			fmt.Sprintf("%s (1 stream), %s (4 streams)", f("%.3f×", v.TCP1), f("%.3f×", v.TCP4)),
			v.TCP1 >= 1.0, v.TCP1.OK())
	} else {
		judge("wireguard TCP vs standalone wireguard-go (issue 15)", "≥ 1.0×", "-", false, false)
	}
	return ts
}
