package bench

import (
	"fmt"
	"strings"
)

// RulesResync is one rule mode's resync against a kube-proxy-sized rule
// set: the time of a resync that finds weft's rules as wanted (what the
// agent does every --iptables-resync seconds and after each nftables
// change), and of one that finds a rule deleted and puts it back.
type RulesResync struct {
	Mode        string `json:"mode"`         // iptables-nft, iptables-legacy, nftables
	OtherRules  int    `json:"other_rules"`  // kube-proxy-like rules loaded beside weft's, nat and filter together
	Resyncs     int    `json:"resyncs"`      // converged resyncs timed
	ConvergedMs Dist   `json:"converged_ms"` // per converged resync
	RepairMs    Dist   `json:"repair_ms"`    // per resync that restores one deleted rule
}

func writeRulesResync(b *strings.Builder, rs []RulesResync) {
	rows := [][]string{{"MODE", "OTHER RULES", "RESYNCS", "CONVERGED P50", "P90", "MAX", "REPAIR P50", "P90"}}
	for _, r := range rs {
		c, p := r.ConvergedMs, r.RepairMs
		rows = append(rows, []string{r.Mode, fmt.Sprint(r.OtherRules), fmt.Sprint(r.Resyncs),
			fmt.Sprintf("%.1f ms", c.P50), fmt.Sprintf("%.1f ms", c.P90), fmt.Sprintf("%.1f ms", c.Max),
			fmt.Sprintf("%.1f ms", p.P50), fmt.Sprintf("%.1f ms", p.P90)})
	}
	table(b, "Rules resync: one resync of weft's rules beside kube-proxy-like nat and filter rules, fresh namespace", rows)
}
