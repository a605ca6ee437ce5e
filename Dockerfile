# The weft image for deploy/kube-weft.yml:
#
#   /usr/local/bin/weft        weft without the lab (-tags nolab): the
#                              operator's tool (status, config, cleanup, ...)
#                              and the agent, run under the names of its links:
#   /usr/local/bin/weft-agent  -> weft, the agent the manifest runs
#   /opt/bin/flanneld          -> weft, flannel's path, for manifests that call it
#   /opt/weft/cni/flannel      the CNI plugin, copied to /opt/cni/bin/flannel
#                              by the DaemonSet's init container
#
#   docker build -t ghcr.io/weftnet/weft:$(git describe --tags --always) \
#     --build-arg VERSION=$(git describe --tags --always) .
#
# `make image` builds the same image without Docker or a registry
# (docs/image.md); tools/image's TestDockerfileInstallsTheSameFiles keeps
# this file installing the same files at the same paths.
#
# Both binaries are static (CGO_ENABLED=0) and cross-compiled on the build
# platform for the target one, so `docker buildx build --platform
# linux/amd64,linux/arm64` needs no emulation for the Go build.

FROM --platform=$BUILDPLATFORM golang:1.26-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -tags nolab \
      -ldflags "-s -w -X github.com/weftnet/weft/internal/version.Version=$VERSION" \
      -o /out/weft ./cmd/weft \
 && CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/weftnet/weft/internal/version.Version=$VERSION" \
      -o /out/flannel ./cmd/weft-cni

# Debian slim rather than distroless: the agent drives iptables and nft,
# and the init containers need a shell to copy files atomically. The
# iptables variant (nft or legacy) must match what kube-proxy uses on the
# hosts; Debian's default is iptables-nft.
FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /opt/bin /opt/weft/cni
COPY --from=build /out/weft /usr/local/bin/
COPY --from=build /out/flannel /opt/weft/cni/flannel
RUN ln -s /usr/local/bin/weft /usr/local/bin/weft-agent \
 && ln -s /usr/local/bin/weft /opt/bin/flanneld
ENTRYPOINT ["/usr/local/bin/weft-agent"]
CMD ["--kube-subnet-mgr"]
