// Package realnode runs a real Kubernetes node on a lab node: containerd v2.4 with runc and
// a kubelet v1.34, inside the node's network namespace (pkg/lab/netlab) and a mount
// namespace of the node's own, so that what a DaemonSet mounts from "the host" is that
// node's, as on separate machines. It complements the kubelet stand-in of pkg/lab/kubelet:
// pods here are containers run by a container runtime, which calls the CNI plugin itself.
//
// # What a node sees
//
// Every daemon of the node is started with `nsenter --net=<netns> --mount=<Dir>/ns/mnt`
// (not `ip netns exec`, which remounts /sys and loses the cgroup hierarchies). The mount
// namespace is made once (`unshare --mount=<Dir>/ns/mnt`, bound like `ip netns` binds
// network namespaces) and set up by a script (setupScript) that runs inside it:
//
//	/etc /opt /usr /var   overlays of the host's, upper layers in <Dir>/ov: the node writes
//	                      its own files there (e.g. /usr/lib/modules, /etc/containerd)
//	/var/lib/containerd   <Dir>/containerd  (real directories: overlayfs snapshots cannot
//	/var/lib/kubelet      <Dir>/kubelet      live on overlayfs, and the lab reads and
//	/var/lib/cni          <Dir>/cni/lib      writes some of them from outside)
//	/var/log              <Dir>/log
//	/etc/cni/net.d        <Dir>/cni/net.d
//	/opt/cni/bin          <Dir>/cni/bin
//	/run                  <Dir>/run, with /run/openvswitch bound to the node's OVS run dir
//	                      (netlab's ovsdb-server and ovs-vswitchd, a host daemon per node
//	                      as with openvswitch-switch), /run/containerd, /run/netns (pod
//	                      network namespaces), /run/xtables.lock …
//	/sys                  a sysfs of the node's network namespace, with the host's cgroups
//
// so containerd and the kubelet run with their default paths and a DaemonSet's hostPath
// volumes (/var/run/openvswitch, /etc/cni/net.d, /opt/cni/bin, /run/netns, /var/lib/cni,
// /lib/modules, /run/xtables.lock) resolve to the node's. All of these mounts exist only
// in the node's mount namespace: the host sees none, and they vanish with it. Mounts are
// shared within it (`mount --make-rshared /`, as systemd does), so mounts containerd makes
// below /run/netns reach containers that mount the directory with HostToContainer.
// The root namespace reaches the node's files through <Dir> (crictl and ctr talk to
// <Dir>/run/containerd/containerd.sock; exec and attach need the node's loopback, so
// Crictl runs inside the node).
//
// # containerd and kubelet
//
// containerd: CRI with restrict_oom_score_adj (root here lacks CAP_SYS_RESOURCE, and the
// -998 containerd asks for every sandbox kills runc's init), the pinned runc, the lab's
// pause image as sandbox image, and registries that all resolve to a closed loopback port:
// images are imported (Config.Images, `ctr -n k8s.io images import`), never pulled, and
// nothing leaves the lab. kubelet: cgroupfs on this machine's cgroup v1 (failCgroupV1
// false) under a cgroupRoot of the node's own, made beforehand in every hierarchy
// including name=systemd (cpuset.cpus and .mems copied); oomScoreAdj 0; no DNS from the
// host; no evictions or image garbage collection; anonymous requests allowed (the API
// server, reaching it through the lab's CONNECT relay, has no kubelet client certificate;
// the kubelet listens only inside the lab's namespaces). It registers the Node with
// Config.IP and reaches the API server through Config.Kubeconfig — in sdn-lab a relay on
// the underlay's gateway address (pkg/lab/relay).
//
// # Teardown
//
// Stop: the kubelet stops; pods are removed through CRI (pods with their own network
// first, host-network ones — a CNI agent — last), so each goes through CNI DEL;
// containerd stops; whatever is left in the node's mount namespace or cgroup tree
// (shims, containers) is killed; every mount below Dir is detached, which drops the last
// reference to the mount namespace and with it every mount the node made (container
// root file systems, pod network namespaces — and so their veths); the cgroup tree is
// removed in every hierarchy; Dir is removed. <Dir>/state.json records the cgroup root and
// the mount namespace, so Sweep does the same for a node whose lab was killed. Nothing of
// a node lives in the root network namespace: no device, no iptables rule.
package realnode
