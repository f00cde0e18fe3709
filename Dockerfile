# syntax=docker/dockerfile:1
#
# zonenet image: the CNI plugin, the operator CLI and the node daemon, with
# deploy/install-cni.sh as the entrypoint that installs the plugin and its
# conflist on the node; the DaemonSet runs zonenetd from the same image
# (see deploy/daemonset.yaml).
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t zonenet .
#   docker run --rm -v /opt/cni/bin:/host/opt/cni/bin -v /etc/cni/net.d:/host/etc/cni/net.d zonenet --once

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Static binaries (no cgo), cross-compiled for the target platform.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    mkdir -p /out; \
    for cmd in zonenet zonenetctl zonenetd; do \
        CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" \
            go build -trimpath -ldflags "-s -w -X main.Version=$VERSION" -o "/out/$cmd" "./cmd/$cmd"; \
    done; \
    test -x /out/zonenet; \
    test -x /out/zonenetctl; \
    test -x /out/zonenetd

FROM debian:12-slim
# jq lets the installer validate a conflist before a runtime ever reads it;
# zonenetd drives iptables-restore and ipset.
RUN apt-get update \
    && apt-get install -y --no-install-recommends jq iptables ipset \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /opt/zonenet/bin/
COPY --chmod=0755 deploy/install-cni.sh /usr/local/bin/install-cni.sh
COPY deploy/10-zonenet.conflist /etc/zonenet/10-zonenet.conflist
ENV PATH=/opt/zonenet/bin:$PATH
LABEL org.opencontainers.image.title="zonenet" \
      org.opencontainers.image.description="zonenet CNI plugin, node daemon, node installer and operator CLI" \
      org.opencontainers.image.source="https://github.com/zonenet/zonenet"
ENTRYPOINT ["/usr/local/bin/install-cni.sh"]
