package faults

import "strings"

// KnownGaps are the rows that fail on main today because their fix is
// being made elsewhere, by row ID, with the item of issue 16 that fixes
// them. A failing row listed here prints "known gap" and does not fail the
// suite; a listed row that passes says so, and its line here should go.
// To make a row required again, delete its line (or run with
// --require ID, or WEFT_FAULTS_REQUIRE=ID,... / all, without editing).
var KnownGaps = map[string]string{
	"lease-overlap-25":           "issue 16 item 1",
	"lease-overlap-32":           "issue 16 item 1",
	"lease-overlap-17":           "issue 16 item 1",
	"lease-dup-vtepmac":          "issue 16 item 2",
	"lease-other-vni":            "issue 16 item 2",
	"dup-public-ip":              "issue 16 item 3",
	"restart-changed-config":     "issue 16 item 4",
	"etcd-blocked":               "issue 16 item 5",
	"etcd-restarted":             "issue 16 item 5: a 2 s etcd death goes unlogged",
	"store-unreachable-at-start": "issue 16 item 5",
	"store-auth":                 "issue 16 item 5",
	"config-deleted":             "issue 16 item 5",
	"config-invalid":             "issue 16 item 5",
	"changed-neigh/vxlan":        "issue 16 item 6",
	"changed-fdb/vxlan":          "issue 16 item 6",
	"changed-route/host-gw":      "issue 16 item 6",
	"healthz-default":            "issue 16 item 7",
	"cni-del-bad-delegate":       "issue 16 item 7",
	"etcd-password-argv":         "issue 16 item 7",
}

// Gaps returns KnownGaps less the rows named in require (comma-separated
// IDs, or "all" for none at all).
func Gaps(require string) map[string]string {
	g := map[string]string{}
	for id, why := range KnownGaps {
		g[id] = why
	}
	for _, id := range strings.Split(require, ",") {
		id = strings.TrimSpace(id)
		if id == "all" {
			return map[string]string{}
		}
		delete(g, id)
	}
	return g
}
