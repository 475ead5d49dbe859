# ovs-sdn build, test and lab entry points. Every target installs what it needs itself.
SHELL := /bin/bash
export TOOLS_BIN := $(CURDIR)/_output/tools/bin
export OVS_SDN_BIN := $(CURDIR)/_output/bin
GO ?= go
GOTEST_FLAGS ?= -count=1

.PHONY: all tools build generate verify fmt vet tidy test test-unit test-integration test-e2e test-e2e-containerd conformance bench run down clean

all: build

## tools: Debian packages (OVS, iptables, mmdebstrap, …) and the pinned builds: etcd,
## kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl, agnhost,
## containerd (+ shim, ctr), runc, crictl, coredns.
tools:
	hack/tools.sh

## build: the project binaries into _output/bin, and the portmap CNI plugin (a tool of
## go.mod, pinned there) that the conflist chains after sdn-cni for hostPorts.
build:
	@mkdir -p $(OVS_SDN_BIN)
	$(GO) build -o $(OVS_SDN_BIN)/ ./cmd/... github.com/containernetworking/plugins/plugins/meta/portmap

## generate: deepcopy, clientset, listers, informers and CRD YAML.
generate:
	hack/update-codegen.sh

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^tools/')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## tidy: go.mod and go.sum of the project and of every tools/ module must be tidy.
tidy:
	@for d in . tools/*/; do \
	  (cd $$d && $(GO) mod tidy -diff >/dev/null) || { echo "go.mod/go.sum in $$d are not tidy: run 'go mod tidy' there"; exit 1; }; \
	done

verify: fmt vet tidy
	hack/verify-codegen.sh

## test-unit: fast tests, no root, no external processes.
test-unit:
	$(GO) test $(GOTEST_FLAGS) -short ./...

## test: everything — unit, integration against real kube-apiserver and OVS, e2e on the lab.
test: tools build fmt vet
	$(GO) test $(GOTEST_FLAGS) -timeout 40m -p 1 ./...

## bench: benchmarks (SPEC §10); numbers go to docs/benchmarks.md. The real-OVS
## ones (BenchmarkOVS*, need root) run with fixed counts: 3 full syncs per size
## (pods, and 1,000 Services), 200 pod add/delete pairs, 100 Service endpoint
## remove/add pairs; every other benchmark runs 3 times, the lab ones
## (test/e2e Benchmark*Lab) once per process. ~10 minutes (the Services lab
## benchmark ~4 of them), plus ~15 minutes of API-server outages
## (BenchmarkAPIServerCatchUp: 5 × 15 s and 5 × 60 s).
bench: tools build
	$(GO) test -p 1 -run '^$$' -bench . -skip '^Benchmark(OVS|APIServerCatchUp)' -benchtime 3x -timeout 40m ./...
	$(GO) test -run '^$$' -bench '^BenchmarkOVS(Services)?FullSync$$' -benchtime 3x -timeout 15m ./pkg/node/
	$(GO) test -run '^$$' -bench '^BenchmarkOVSPodChurn$$' -benchtime 200x -timeout 15m ./pkg/node/
	$(GO) test -run '^$$' -bench '^BenchmarkOVSServiceEndpointChange$$' -benchtime 100x -timeout 15m ./pkg/node/
	$(GO) test -run '^$$' -bench '^BenchmarkAPIServerCatchUp$$' -benchtime 1x -timeout 90m ./pkg/node/

## test-e2e-containerd: every e2e suite on real nodes (containerd + runc + kubelet per node,
## ovs-sdn installed from manifests/). The real-node suite (TestRealNodes) runs on real nodes
## in plain `make test` too.
test-e2e-containerd: tools build
	E2E_RUNTIME=containerd $(GO) test $(GOTEST_FLAGS) -timeout 60m -p 1 ./test/e2e/

## conformance: Kubernetes' own network e2e tests (k8s.io/kubernetes v1.34.4 e2e.test,
## unmodified) on a real-node lab in networkpolicy mode with Services in OVS: the
## [sig-network] Netpol suite CONFORMANCE_RUNS times (default 3), then the [sig-network]
## [Conformance] specs (test/conformance/suites.go lists what is skipped and why). Not part
## of `make test` (about an hour on 2 cores); run before each release. Reports:
## _output/conformance/<suite>-<run>/junit_01.xml.
CONFORMANCE_RUNS ?= 3
CONFORMANCE_SUITES ?= netpol,sig-network-conformance
conformance: tools build
	hack/tools.sh e2e
	$(GO) run ./test/conformance --runs $(CONFORMANCE_RUNS) --suites $(CONFORMANCE_SUITES) --report-dir _output/conformance

## run: the sdn-lab demo cluster (3 nodes, seeds/003 policies and reachability matrices);
## stays up until Ctrl-C or `make down`, then leaves nothing behind. The stand-in runtime
## is up in ~8 s, real nodes in ~45 s (README); RUNTIME=containerd for real nodes.
RUNTIME ?= stand-in
run: tools build
	$(OVS_SDN_BIN)/sdn-lab up --nodes 3 --demo --runtime $(RUNTIME)

## down: stop a running lab (or sweep what a killed one left).
down:
	@if [ -x $(OVS_SDN_BIN)/sdn-lab ]; then $(OVS_SDN_BIN)/sdn-lab down; else $(GO) run ./cmd/sdn-lab down; fi

clean:
	rm -rf _output

## manifests: render manifests/ from manifests/config.yaml (never edit the rendered files).
.PHONY: manifests
manifests:
	$(GO) run ./cmd/sdnctl render-manifests --config manifests/config.yaml --output-dir manifests
