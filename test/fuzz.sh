#!/usr/bin/env bash
# Runs every Go fuzz target of the module, one after another, each for
# FUZZTIME. The targets are found, not listed: every
# `func FuzzX(f *testing.F)` in a *_test.go file, so a new one is picked up
# without editing anything. Their seed corpora (f.Add and
# testdata/fuzz/FuzzX/) already run as ordinary tests in `make test`; this
# is the long search for new crashers. A crasher is written to the
# package's testdata/fuzz/FuzzX/ by `go test`: check it in as a regression
# test and fix the code.
#
#   FUZZTIME   per target (default 60s)
#   FUZZ       only targets whose name matches this extended regexp
#   FUZZFLAGS  more `go test` flags (default -fuzzminimizetime=10s: Go's
#              default minimises every new interesting input for up to 60 s,
#              which can eat a whole FUZZTIME on the slower targets)
#   --list     print "package target" lines and exit
set -euo pipefail

cd "$(dirname "$0")/.."
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-60s}"
FUZZ="${FUZZ:-.}"
FUZZFLAGS="${FUZZFLAGS:--fuzzminimizetime=10s}"

# "./dir FuzzName" per target, sorted.
targets="$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	sed -E 's|^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*$|\1 \2|' |
	awk -v re="$FUZZ" '$2 ~ re' | sort -u)"

if [ "${1:-}" = "--list" ]; then
	printf '%s\n' "$targets"
	exit 0
fi
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz target matches FUZZ=$FUZZ" >&2
	exit 1
fi

n=$(printf '%s\n' "$targets" | wc -l)
echo "fuzz: $n targets, $FUZZTIME each"
failed=()
i=0
while read -r pkg name; do
	i=$((i + 1))
	echo "=== [$i/$n] $name ($pkg)"
	# From the package's own directory, so that a target in a nested
	# module (tools/...) runs in that module.
	# shellcheck disable=SC2086 # FUZZFLAGS is a list of flags
	if ! (cd "$pkg" && "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" $FUZZFLAGS .); then
		failed+=("$name ($pkg)")
	fi
done <<<"$targets"

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of $n targets failed:" >&2
	printf '  %s\n' "${failed[@]}" >&2
	echo "fuzz: each crasher is in its package's testdata/fuzz/<target>/; check it in and fix the code" >&2
	exit 1
fi
echo "fuzz: all $n targets ran $FUZZTIME without a failure"
