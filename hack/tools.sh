#!/usr/bin/env bash
# Builds the pinned binaries the tests and sdn-lab run from the Go module proxy into
# $TOOLS_BIN — the control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler), the real nodes' runtime (kubelet, containerd, its runc shim, runc, ctr,
# crictl), kubectl, the e2e image binary agnhost and the containerd lab's cluster DNS
# (CoreDNS) — and installs the Debian packages the node agent, the tests and sdn-lab need.
# Every step is skipped when its result is already present, so a second run is a no-op.
# TOOLS_TIMINGS=1 prints how long each build took.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_BIN=${TOOLS_BIN:-$PWD/_output/tools/bin}
mkdir -p "$TOOLS_BIN"

# openvswitch-*, iptables, iproute2, ethtool, conntrack: the node agent and the lab's nodes.
# libseccomp-dev: runc's seccomp support (cgo). mmdebstrap: the Debian root file systems of
# the lab's container images. containernetworking-plugins: the static CNI network
# (bridge, host-local) of the real-node runtime's own tests.
pkgs=(openvswitch-switch openvswitch-common iptables iproute2 ethtool iperf3 conntrack procps kmod
  libseccomp-dev mmdebstrap containernetworking-plugins)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "tools: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "tools: need root to install ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a system OVS in the root namespace; tests run their own per-node
# instances and must not race a system daemon for /var/run/openvswitch.
if command -v systemctl >/dev/null && systemctl is-active -q openvswitch-switch 2>/dev/null; then
  systemctl stop openvswitch-switch || true
fi

# build NAME MODULE_DIR PACKAGE [CGO [TAGS [LDFLAGS]]]: go build PACKAGE in MODULE_DIR (whose
# go.mod pins it) to $TOOLS_BIN/NAME. The stamp is a hash of the pins and the build settings;
# the binary is written under a temporary name and renamed, so a running copy is never torn.
build() {
  local name=$1 dir=$2 pkg=$3 cgo=${4:-0} tags=${5:-} ldflags=${6:-} stamp="$TOOLS_BIN/.$1.stamp" sum begin
  sum=$( (cat "$dir/go.mod" "$dir/go.sum"
    [ "$cgo$tags$ldflags" = 0 ] || echo "cgo=$cgo tags=$tags ldflags=$ldflags") | sha256sum | cut -c1-16)
  if [ -x "$TOOLS_BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return; fi
  echo "tools: building $name ($pkg${tags:+ -tags $tags})"
  begin=$(date +%s)
  (cd "$dir" && CGO_ENABLED=$cgo go build -trimpath -ldflags="-s $ldflags" ${tags:+-tags "$tags"} \
    -o "$TOOLS_BIN/.$name.new" "$pkg")
  mv -f "$TOOLS_BIN/.$name.new" "$TOOLS_BIN/$name"
  echo "$sum" >"$stamp"
  [ -z "${TOOLS_TIMINGS:-}" ] || echo "tools: built $name in $(($(date +%s) - begin)) s"
}
build etcd tools/etcd go.etcd.io/etcd/server/v3
build kube-apiserver tools/kube k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager tools/kube k8s.io/kubernetes/cmd/kube-controller-manager
# The node binaries say which release they are (the Node's kubeletVersion, `kubectl version`);
# without these flags Kubernetes binaries built from the module proxy call themselves v0.0.0.
kver=v1.34.4
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kver -X k8s.io/component-base/version.gitMajor=1
  -X k8s.io/component-base/version.gitMinor=34 -X k8s.io/component-base/version.gitTreeState=clean
  -X k8s.io/client-go/pkg/version.gitVersion=$kver -X k8s.io/client-go/pkg/version.gitMajor=1
  -X k8s.io/client-go/pkg/version.gitMinor=34"
kube_ldflags=$(echo $kube_ldflags)
build kube-scheduler tools/kubenode k8s.io/kubernetes/cmd/kube-scheduler 0 "" "$kube_ldflags"
build kubelet tools/kubenode k8s.io/kubernetes/cmd/kubelet 0 "" "$kube_ldflags"
build kubectl tools/kubenode k8s.io/kubernetes/cmd/kubectl 0 "" "$kube_ldflags"
# agnhost 2.56 is the release k8s.io/kubernetes v1.34.4's e2e tests use (test/images/agnhost/VERSION).
build agnhost tools/kubenode k8s.io/kubernetes/test/images/agnhost 0 "" "-X main.Version=2.56"
ctrd_tags="no_btrfs no_devmapper no_zfs no_aufs"
ctrd_ldflags="-X github.com/containerd/containerd/v2/version.Version=v2.4.2"
build containerd tools/containerd github.com/containerd/containerd/v2/cmd/containerd 0 "$ctrd_tags" "$ctrd_ldflags"
build containerd-shim-runc-v2 tools/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 0 "$ctrd_tags" "$ctrd_ldflags"
build ctr tools/containerd github.com/containerd/containerd/v2/cmd/ctr 0 "$ctrd_tags" "$ctrd_ldflags"
# runc needs cgo (its nsexec C code) and links libseccomp for seccomp profiles.
build runc tools/runc github.com/opencontainers/runc 1 seccomp
build crictl tools/critools sigs.k8s.io/cri-tools/cmd/crictl 0 "" "-X sigs.k8s.io/cri-tools/pkg/version.Version=v1.34.0"
# CoreDNS, the containerd lab's cluster DNS (its version is a constant of its source).
build coredns tools/coredns github.com/coredns/coredns
# `hack/tools.sh e2e` (make conformance) also builds Kubernetes' own e2e suite: e2e.test
# is `go test -c` of k8s.io/kubernetes/test/e2e, ~7 minutes and 180 MB, so plain
# `make tools` (and `make test`) leave it out. Same stamp rule as build.
build_e2e() {
  local dir=tools/kubee2e stamp="$TOOLS_BIN/.e2e.test.stamp" sum begin
  sum=$( (cat "$dir/go.mod" "$dir/go.sum"; echo "ldflags=$kube_ldflags") | sha256sum | cut -c1-16)
  if [ -x "$TOOLS_BIN/e2e.test" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return; fi
  echo "tools: building e2e.test (k8s.io/kubernetes/test/e2e $kver; ~7 minutes)"
  begin=$(date +%s)
  (cd "$dir" && CGO_ENABLED=0 go test -c -trimpath -ldflags="-s $kube_ldflags" \
    -o "$TOOLS_BIN/.e2e.test.new" k8s.io/kubernetes/test/e2e)
  mv -f "$TOOLS_BIN/.e2e.test.new" "$TOOLS_BIN/e2e.test"
  echo "$sum" >"$stamp"
  [ -z "${TOOLS_TIMINGS:-}" ] || echo "tools: built e2e.test in $(($(date +%s) - begin)) s"
}
if [ "${1:-}" = e2e ]; then
  build_e2e
  # ginkgo runs e2e.test's specs in parallel processes (the CLI of the Ginkgo the suite uses).
  build ginkgo tools/kubee2e github.com/onsi/ginkgo/v2/ginkgo
fi
echo "tools: ready in $TOOLS_BIN"
