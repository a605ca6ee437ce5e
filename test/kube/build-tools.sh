#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager for the
# Kubernetes-mode tests from the tools module next to this script, into a
# cache directory outside the clone keyed by that module's go.sum, and
# prints the directory. Idempotent: when the binaries are already there it
# only prints the directory. A cold build takes ~8 minutes on two cores and
# ~4 GB of Go build cache.
#
#   build-tools.sh        the control plane (etcd, kube-apiserver,
#                         kube-controller-manager)
#   build-tools.sh node   also what a real node runs (kubelet,
#                         kube-scheduler, kube-proxy): make test-cluster
#
#   WEFT_KUBE_CACHE  cache root (default /var/cache/weft)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/tools"
root="${WEFT_KUBE_CACHE:-/var/cache/weft}"
hash="$(sha256sum "$tools/go.sum" | cut -c1-12)"
dir="$root/kube-$hash"
bins=(etcd kube-apiserver kube-controller-manager)
if [ "${1:-}" = node ]; then
	bins+=(kubelet kube-scheduler kube-proxy)
fi

have=1
for b in "${bins[@]}"; do [ -x "$dir/$b" ] || have=0; done
if [ "$have" = 1 ]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$root"
# Test packages run in parallel and may all find the binaries missing:
# the first builds, the others wait here and then find them.
exec 9>"$root/.build.lock"
flock 9
have=1
for b in "${bins[@]}"; do [ -x "$dir/$b" ] || have=0; done
if [ "$have" = 1 ]; then
	echo "$dir"
	exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=0
V=k8s.io/component-base/version
# Without the version stamp the server reports v0.0.0-master+$Format:%H$,
# which semver-parsing clients reject.
LDF="-s -w -X $V.gitMajor=1 -X $V.gitMinor=37 -X $V.gitVersion=v1.37.2"
LDF="$LDF -X $V.gitCommit=0000000000000000000000000000000000000000 -X $V.gitTreeState=clean"
LDF="$LDF -X $V.buildDate=2026-01-01T00:00:00Z"

mkdir -p "$dir"
# Build into a private directory and rename, so a killed build never
# leaves a binary that a later run would take for a finished one.
tmp="$(mktemp -d "$root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cd "$tools"
go mod download
start=$SECONDS
echo "build-tools: building ${bins[*]} into $dir (cold: ~8 min for the control plane)" >&2
# Sequential: each go build already uses every core.
for b in "${bins[@]}"; do
	[ -x "$dir/$b" ] && continue
	case "$b" in
	etcd) pkg=go.etcd.io/etcd/server/v3 ;;
	*) pkg=k8s.io/kubernetes/cmd/$b ;;
	esac
	go build -trimpath -ldflags="$LDF" -o "$tmp/$b" "$pkg"
	mv -f "$tmp/$b" "$dir/$b"
done
echo "build-tools: done in $((SECONDS - start)) s" >&2
echo "$dir"
