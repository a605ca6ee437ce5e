#!/usr/bin/env bash
# Builds containerd 2.x (containerd, containerd-shim-runc-v2, ctr) for the
# real-node test (make test-cluster) from the module next to this script,
# test/kube/nodetools, into a cache directory outside the clone keyed by
# that module's go.sum, and prints the directory. Idempotent, like
# build-tools.sh beside it. Static binaries (CGO_ENABLED=0); the btrfs,
# devmapper and zfs snapshotters and tracing are left out: the test uses
# overlayfs (or native) and nothing else.
#
#   WEFT_KUBE_CACHE  cache root (default /var/cache/weft)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/nodetools"
root="${WEFT_KUBE_CACHE:-/var/cache/weft}"
hash="$(sha256sum "$tools/go.sum" | cut -c1-12)"
dir="$root/containerd-$hash"
bins=(containerd containerd-shim-runc-v2 ctr)

have() {
	for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
}
if have; then
	echo "$dir"
	exit 0
fi

mkdir -p "$root"
exec 9>"$root/.build-containerd.lock"
flock 9
if have; then
	echo "$dir"
	exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=0
V=github.com/containerd/containerd/v2/version
LDF="-s -w -X $V.Version=v2.4.2 -X $V.Revision=weft-test -X $V.Package=github.com/containerd/containerd/v2"
TAGS="no_btrfs no_devmapper no_zfs no_tracing"

mkdir -p "$dir"
tmp="$(mktemp -d "$root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cd "$tools"
go mod download
start=$SECONDS
echo "build-nodetools: building ${bins[*]} into $dir" >&2
for b in "${bins[@]}"; do
	[ -x "$dir/$b" ] && continue
	go build -trimpath -tags "$TAGS" -ldflags="$LDF" -o "$tmp/$b" "github.com/containerd/containerd/v2/cmd/$b"
	mv -f "$tmp/$b" "$dir/$b"
done
echo "build-nodetools: done in $((SECONDS - start)) s" >&2
echo "$dir"
