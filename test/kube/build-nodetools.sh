#!/usr/bin/env bash
# Builds containerd 2.x (containerd, containerd-shim-runc-v2, ctr) for the
# real-node test (make test-cluster) from the module next to this script,
# test/kube/nodetools, into a cache directory keyed by that module's go.sum
# (cache.sh), and prints the directory. Idempotent, like build-tools.sh
# beside it. Static binaries (CGO_ENABLED=0); the btrfs, devmapper and zfs
# snapshotters and tracing are left out: the test uses overlayfs (or
# native) and nothing else.
#
#   WEFT_KUBE_CACHE  cache root (default /var/cache/weft)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
. "$here/cache.sh"
bins=(containerd containerd-shim-runc-v2 ctr)
cache_init containerd "$here/nodetools"
cache_done_or_lock .build-containerd.lock

pkg_of() { echo "github.com/containerd/containerd/v2/cmd/$1"; }
V=github.com/containerd/containerd/v2/version
LDF="-s -w -X $V.Version=v2.4.2 -X $V.Revision=weft-test -X $V.Package=github.com/containerd/containerd/v2"
TAGS="no_btrfs no_devmapper no_zfs no_tracing"
cache_build build-nodetools ""
