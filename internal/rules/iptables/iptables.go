// Package iptables keeps weft's traffic rules in iptables: flannel's chains
// and comments, so `iptables-save | grep flanneld` runbooks keep working,
// plus one chain of weft's own that keeps pod source addresses when Docker
// (or anything else) masquerades a pod subnet in nat POSTROUTING.
//
// For cluster network N, this host's subnet S (IPv6: the same with
// ip6tables and ff00::/8):
//
//	*nat                                       (Masq / KeepSourceFor)
//	-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG   rule 1
//	-A POSTROUTING -m comment --comment "flanneld masq" -j WEFT-KEEPSRC      rule 2
//	-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ... -j RETURN
//	-A FLANNEL-POSTRTG -s S -d N ... -j RETURN
//	-A FLANNEL-POSTRTG -s N -d S ... -j RETURN
//	-A FLANNEL-POSTRTG ! -s N -d S ... -j RETURN
//	-A FLANNEL-POSTRTG -s N ! -d 224.0.0.0/4 ... -j MASQUERADE --random-fully
//	-A FLANNEL-POSTRTG ! -s N -d N ... -j MASQUERADE --random-fully
//	-A WEFT-KEEPSRC -m mark --mark 0x4000/0x4000 ... -j RETURN
//	-A WEFT-KEEPSRC -d S ... -j RETURN
//	-A WEFT-KEEPSRC -s S -d N ... -j ACCEPT
//	*filter                                    (Forward)
//	-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
//	-A FLANNEL-FWD -s N ... -j ACCEPT
//	-A FLANNEL-FWD -d N ... -j ACCEPT
//
// FLANNEL-POSTRTG and FLANNEL-FWD are flannel's, rule for rule. Its RETURNs
// only leave the chain: the packet goes on down POSTROUTING and meets
// Docker's `-s S ! -o docker0 -j MASQUERADE`, which is why seed 000's users
// saw host addresses in remote pods' logs. WEFT-KEEPSRC ends nat
// POSTROUTING with ACCEPT for local pod → remote pod traffic, so no rule
// below it NATs that traffic; packets to local pods (Docker's hairpin
// masquerade) and packets kube-proxy marked go on as before. Because
// Docker inserts its rule at the top when it starts, weft's two jumps must
// be the first two rules of POSTROUTING, and every Sync puts them back
// there. ACCEPT only ends the iptables table it is in, so this works when
// Docker and weft use the same iptables variant, which variant detection
// arranges; see docs/rules.md.
//
// WEFT-KEEPSRC and its jump are rendered where Spec.KeepSourceFor says so.
// rules.Manager defers them in a family without NAT (no --ip-masq, no nat
// table of anyone's): a nat table would turn on connection tracking for all
// forwarded traffic, and without one nothing can rewrite a pod's source.
// Without Masq and keep-source, weft writes nothing to (and so never
// creates) the nat table.
//
// Sync reads iptables-save (iptables-legacy table by table, see
// Manager.save), compares every chain and position with the desired set
// (flannel only checks that rules exist, issue #1337) and fixes whatever
// differs in one iptables-restore --noflush transaction per table.
package iptables

import "fmt"

// Chain names and comments. The first four are flannel's.
const (
	ChainMasq      = "FLANNEL-POSTRTG"
	ChainForward   = "FLANNEL-FWD"
	CommentMasq    = "flanneld masq"
	CommentForward = "flanneld forward"
	// ChainKeepSource is weft's: see the package comment.
	ChainKeepSource = "WEFT-KEEPSRC"
	// KubeProxyMark is kube-proxy's masquerade mark; such packets are left
	// to kube-proxy's own rules.
	KubeProxyMark = "0x4000/0x4000"
)

// ownChains are the chains weft (and flannel before it) owns wholly, in
// any table.
var ownChains = map[string]bool{ChainMasq: true, ChainForward: true, ChainKeepSource: true}

// ownComments mark weft's (and flannel's) rules in chains it shares.
var ownComments = map[string]bool{CommentMasq: true, CommentForward: true}

// Variant is one of the two iptables implementations a host may use:
// iptables-nft (nf_tables kernel API; Debian's and most distributions'
// default) or iptables-legacy (x_tables). Rules written with one are
// invisible to the other's tools and run in separate kernel tables.
type Variant string

const (
	NFT    Variant = "nft"
	Legacy Variant = "legacy"
)

// ParseVariant accepts "nft", "legacy" and "" (detect).
func ParseVariant(s string) (Variant, error) {
	switch Variant(s) {
	case NFT, Legacy, "":
		return Variant(s), nil
	}
	return "", fmt.Errorf("unknown iptables variant %q (want \"nft\", \"legacy\" or empty to detect)", s)
}
