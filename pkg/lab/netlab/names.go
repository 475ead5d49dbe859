package netlab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
)

// Fixed interface and bridge names inside the lab namespaces.
const (
	underlayBridge = "underlay" // Linux bridge in <prefix>-underlay
	uplinkName     = "eth0"     // a node's (or host's) end of its underlay veth
	podIfName      = "eth0"     // a pod's end of its veth
	// PhysBridge is the node's netdev bridge holding eth0 and the node IP (see package doc).
	PhysBridge = "br-phy"
	// PodBridge is the bridge AddTestPod plugs pods into; the caller creates it.
	PodBridge = "br0"
)

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)
	nodeRE   = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)
	podRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
)

// ValidPrefix reports whether prefix can name a Lab: 1–10 lowercase letters or digits,
// starting with a letter. It has no dash, so "<prefix>-" never matches another lab's names.
func ValidPrefix(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("lab prefix %q: want %s", prefix, prefixRE)
	}
	return nil
}

func validNodeName(name string) error {
	if name == "underlay" || !nodeRE.MatchString(name) {
		return fmt.Errorf("node name %q: want %s, not \"underlay\"", name, nodeRE)
	}
	return nil
}

func validPodName(name string) error {
	if !podRE.MatchString(name) {
		return fmt.Errorf("pod name %q: want %s", name, podRE)
	}
	return nil
}

// underlayPort is the underlay-side end of the uplink of the node (or host) called name.
func underlayPort(name string) string { return "u-" + name }

// hostVethName derives a stable ≤15-char name for a pod's host-side veth.
func hostVethName(node, pod string) string {
	sum := sha256.Sum256([]byte(node + "/" + pod))
	return "veth" + hex.EncodeToString(sum[:4])
}
