# zonenet — build, demo and test. Everything runs as root on Debian 12.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.Version=$(VERSION)
BIN     := $(CURDIR)/bin
CMDS    := zonenet zonenetctl zonenetd

.PHONY: all build setup demo demo-cluster test test-unit test-root test-e2e fuzz bench bench-acl bench-overlay bench-overlay-scale bench-cluster vet clean

all: build

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$$c ./cmd/$$c || exit 1; \
	done

# Installs what the demo and the tests need (apt packages, cnitool, crictl,
# container images built locally). Idempotent.
setup:
	test/e2e/setup.sh

# The reference topology in network namespaces on this machine.
demo: build
	$(BIN)/zonenetctl demo --zonenet $(BIN)/zonenet

# The same network on three nodes continents apart, with etcd and a
# zonenetd per node, all in network namespaces on this machine.
demo-cluster: build
	$(BIN)/zonenetctl demo --nodes 3 --zonenet $(BIN)/zonenet --zonenetd $(BIN)/zonenetd

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Pure packages: no root needed (overlay's kernel tests skip without root).
test-unit:
	$(GO) test -race -count=1 ./conf/... ./ipam/... ./acl/... ./overlay/... ./pki/... ./daemon/...

# Everything else: real namespaces, veths, bridges, iptables (root), and a
# real etcd started by the cluster tests (installed by make setup);
# test/multinode runs a three-node cluster with a zonenetd per node.
test-root: build
	ZONENET_BIN=$(BIN) $(GO) test -count=1 -p 1 -timeout 20m ./...

# Real runtimes: cnitool, containerd (ctr and CRI), podman.
test-e2e: build
	ZONENET_BIN=$(BIN) test/e2e/run-all.sh

test: vet test-unit test-root test-e2e

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 30s ./conf/
	$(GO) test -run '^$$' -fuzz FuzzParseArgs -fuzztime 30s ./conf/
	$(GO) test -run '^$$' -fuzz FuzzParsePolicy -fuzztime 30s ./conf/
	$(GO) test -run '^$$' -fuzz FuzzKey -fuzztime 30s ./ipam/
	$(GO) test -run '^$$' -fuzz FuzzRecord -fuzztime 30s ./ipam/
	$(GO) test -run '^$$' -fuzz FuzzParseKey -fuzztime 30s ./cluster/

bench: build
	ZONENET_BIN=$(BIN) test/bench/cni-bench.sh

# Policy install time and the per-packet cost of a large policy; builds
# its own binaries, like bench.
bench-acl:
	test/bench/acl-bench.sh

# VXLAN overlay: zonenet's programming against a hand-built one.
bench-overlay:
	test/bench/overlay-bench.sh

# overlay.Reconcile against 1,000 and 50 fake peers: times, changes
# written, kernel entries; fails when a figure misses its target.
bench-overlay-scale:
	test/bench/overlay-scale.sh

# zonenetd's convergence with real etcd: a node joining and dying among
# three, and one real node among 50 (49 fake registrations); fails when a
# drop misses the node TTL.
bench-cluster:
	test/bench/cluster-bench.sh

clean:
	rm -rf $(BIN)
