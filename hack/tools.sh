#!/usr/bin/env bash
# Builds the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager)
# from the Go module proxy into $TOOLS_BIN and installs the Debian packages the node agent,
# the tests and sdn-lab need. Every step is skipped when its result is already present, so a
# second run is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_BIN=${TOOLS_BIN:-$PWD/_output/tools/bin}
mkdir -p "$TOOLS_BIN"

pkgs=(openvswitch-switch openvswitch-common iptables iproute2 ethtool iperf3 conntrack procps kmod)
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

build() { # build NAME MODULE_DIR PACKAGE
  local name=$1 dir=$2 pkg=$3 stamp="$TOOLS_BIN/.$1.stamp" sum
  sum=$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$TOOLS_BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then return; fi
  echo "tools: building $name ($pkg)"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$TOOLS_BIN/$name" "$pkg")
  echo "$sum" >"$stamp"
}
build etcd tools/etcd go.etcd.io/etcd/server/v3
build kube-apiserver tools/kube k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager tools/kube k8s.io/kubernetes/cmd/kube-controller-manager
echo "tools: ready in $TOOLS_BIN"
