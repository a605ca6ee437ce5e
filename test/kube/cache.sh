# Sourced by build-tools.sh and build-nodetools.sh: a cache directory of
# binaries built from a Go module next to them, outside the clone, keyed by
# that module's go.sum, so a fresh clone (CI) reuses what an earlier one
# built and a change of pinned versions builds anew.
#
#   WEFT_KUBE_CACHE  cache root (default /var/cache/weft)
#
# The caller sets bins (the binaries), names the module and cache with
# cache_init, and defines pkg_of BIN (the package to build for BIN); LDF
# and TAGS are passed to go build.

# cache_init NAME MODULE_DIR: sets root, module and dir
# ($root/NAME-<hash of MODULE_DIR/go.sum>).
cache_init() {
	module="$2"
	root="${WEFT_KUBE_CACHE:-/var/cache/weft}"
	dir="$root/$1-$(sha256sum "$module/go.sum" | cut -c1-12)"
}

cache_have() {
	local b
	for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

# cache_done_or_lock LOCK: prints dir and exits when every binary is
# there; otherwise takes LOCK, since test packages run in parallel and may
# all find the binaries missing: the first builds, the others wait here
# and then find them.
cache_done_or_lock() {
	if cache_have; then
		echo "$dir"
		exit 0
	fi
	mkdir -p "$root"
	exec 9>"$root/$1"
	flock 9
	if cache_have; then
		echo "$dir"
		exit 0
	fi
}

# cache_build LABEL NOTE: builds the missing binaries one after another
# (each go build already uses every core) into a private directory and
# renames them into place, so a killed build never leaves a binary that a
# later run would take for a finished one; prints dir.
cache_build() {
	export PATH="$PATH:/usr/local/go/bin"
	export CGO_ENABLED=0
	mkdir -p "$dir"
	tmp="$(mktemp -d "$root/.build-XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	cd "$module"
	go mod download
	local start=$SECONDS b
	echo "$1: building ${bins[*]} into $dir$2" >&2
	for b in "${bins[@]}"; do
		[ -x "$dir/$b" ] && continue
		go build -trimpath ${TAGS:+-tags "$TAGS"} -ldflags="$LDF" -o "$tmp/$b" "$(pkg_of "$b")"
		mv -f "$tmp/$b" "$dir/$b"
	done
	echo "$1: done in $((SECONDS - start)) s" >&2
	echo "$dir"
}
