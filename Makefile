# weft's build, demo and test entry points. `sudo make demo` and
# `sudo make test` are the two commands README promises a new user.

# sudo resets PATH on Debian, which drops /usr/local/go/bin.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/weftnet/weft/internal/version.Version=$(VERSION)
CNI_PLUGINS := github.com/containernetworking/plugins/plugins

.PHONY: all build weft cni demo test test-kube kube-tools unit vet clean bench faults screenshots fuzz

all: build

build: weft cni

# weft is the operator's multi-tool (lab, status, config, ...); weft-agent
# is the agent alone, what hosts run and what the lab starts when present.
weft:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/weft ./cmd/weft-agent

# The lab and the tests use the reference CNI plugins built from the Go
# module proxy at the version go.mod pins (its tool directives keep them
# in the module graph through `go mod tidy`), next to weft's own plugin
# installed under flannel's name.
cni:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/cni/flannel ./cmd/weft-cni
	$(GO) build -o bin/cni/bridge $(CNI_PLUGINS)/main/bridge
	$(GO) build -o bin/cni/host-local $(CNI_PLUGINS)/ipam/host-local
	$(GO) build -o bin/cni/loopback $(CNI_PLUGINS)/main/loopback
	$(GO) build -o bin/cni/portmap $(CNI_PLUGINS)/meta/portmap

# The weft image, without Docker or a registry (docs/image.md): weft's
# programs built static from this tree on Debian's iptables and nftables
# (through this host's apt, cached under /var/cache/weft/debs), assembled
# by tools/image (go-containerregistry, its own module). Writes
# bin/weft-image.oci.tar, bin/weft-image.docker.tar and bin/kube-weft.yml
# naming ghcr.io/weftnet/weft:$(VERSION). Two builds of one commit give
# one digest. test-image builds it twice and runs it chrooted (root).
.PHONY: image test-image
image:
	cd tools/image && $(GO) run . build -src $(CURDIR) -out $(CURDIR)/bin -version $(VERSION)

test-image:
	cd tools/image && $(GO) vet ./... && WEFT_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 20m ./...

# The real-node test (docs/kubernetes.md): three "machines" on this one,
# each a network + mount namespace running containerd 2.x with Debian's
# runc, kubelet and kube-proxy; bin/kube-weft.yml applied; weft's DaemonSet
# and test pods started through CRI. Needs root and runc; builds kubelet,
# kube-scheduler, kube-proxy and containerd once into /var/cache/weft.
.PHONY: test-cluster node-tools
node-tools:
	test/kube/build-tools.sh node
	test/kube/build-nodetools.sh

test-cluster: build image node-tools
	cd tools/image && $(GO) run . testpod -src $(CURDIR) -out $(CURDIR)/bin/testpod-image.oci.tar
	$(TEST_ENV) WEFT_CLUSTER_TEST=1 \
		WEFT_KUBE_BIN_DIR=$$(test/kube/build-tools.sh node) \
		WEFT_CONTAINERD_BIN_DIR=$$(test/kube/build-nodetools.sh) \
		WEFT_IMAGE_OCI=$(CURDIR)/bin/weft-image.oci.tar \
		WEFT_TESTPOD_OCI=$(CURDIR)/bin/testpod-image.oci.tar \
		WEFT_KUBE_MANIFEST=$(CURDIR)/bin/kube-weft.yml \
		$(GO) test -count=1 -timeout 30m -v $(CLUSTER_TEST_FLAGS) ./test/cluster/

# A three-host virtual cluster in network namespaces; needs root.
demo: build
	./bin/weft lab demo --hosts 3 --backend host-gw --pods 2

# The benchmarks of docs/benchmarks.md: labs on this machine, about 15
# minutes on 2 cores; needs root, iperf3 and ping. Options go in
# BENCH_FLAGS, e.g. BENCH_FLAGS="--only scale,churn --leases 5000". The
# JSON result is left in bin/bench.json.
bench: build
	./bin/weft lab bench --json-out bin/bench.json $(BENCH_FLAGS)

# The fault suite of docs/reliability.md: labs with pod-to-pod pings every
# 10 ms, one row per fault (packets lost, time to repair, PASS/FAIL, the
# log line naming the cause), written into docs/reliability.md; about 3
# minutes on 2 cores; needs root. Fails when a row that is not a known gap
# misses the goal. Options go in FAULTS_FLAGS, e.g.
# FAULTS_FLAGS="--etcd-block 10s --only etcd" or "--require all".
# kube-tools provides the etcd binary of the 3-member cluster row.
faults: build kube-tools
	./bin/weft lab faults --write-doc docs/reliability.md $(FAULTS_FLAGS)

# Unit and integration tests, with the race detector. Integration tests
# need root and fail (rather than skip) when they cannot run. The tests
# that change host-wide kernel settings (nstest.Serial) run afterwards, on
# their own, so that no other test shares the kernel with them.
TEST_ENV := WEFT_REQUIRE_ROOT=1 WEFT_CNI_BIN_DIR=$(CURDIR)/bin/cni WEFT_BIN=$(CURDIR)/bin/weft
SERIAL_TESTS := TestDemoOverflowsALoweredNeighTable|TestFaultSuite
test: build vet kube-tools
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) test-image
	$(MAKE) test-cluster
	$(TEST_ENV) WEFT_SERIAL_TESTS=1 $(GO) test -race -count=1 -timeout 10m -run '^($(SERIAL_TESTS))$$' ./...

# Kubernetes mode against a real etcd + kube-apiserver + kube-controller-
# manager, built once from the module proxy (about 8 minutes cold) and
# cached under /var/cache/weft. `make test` runs these tests too.
kube-tools:
	test/kube/build-tools.sh

test-kube: build kube-tools
	$(TEST_ENV) $(GO) test -race -count=1 -timeout 20m ./internal/store/kube/ ./test/kube/...

# docs/img/page-ok.png and page-broken.png, taken by the browser test of
# the agent's page (docs/page.md) in a three-host lab; needs root and
# Debian's chromium.
screenshots: build
	mkdir -p docs/img
	WEFT_SCREENSHOT_DIR=$(CURDIR)/docs/img $(TEST_ENV) \
		$(GO) test -count=1 -run '^(TestPageInBrowser|TestLabPageInBrowser)$$' ./test/integration/

# Every fuzz target in the repository (found by test/fuzz.sh, not listed
# here), one after another, for FUZZTIME each: about 15 minutes at the
# default. Not part of `make test`, which runs the seed corpora only.
# FUZZ=<regexp> picks targets by name.
FUZZTIME ?= 60s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) test/fuzz.sh

# Only the tests that need neither root nor namespaces.
unit:
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
