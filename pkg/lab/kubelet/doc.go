// Package kubelet is sdn-lab's kubelet stand-in: for one lab node it registers the Node, keeps
// it Ready, and runs the Pods bound to it the way a container runtime would as far as the
// network is concerned — without containers.
//
// # Node
//
// Run creates (or adopts) the Node object with InternalIP = Config.NodeIP and Hostname
// addresses and a Ready condition, then every NodeStatusPeriod renews the node's Lease in
// kube-node-lease and re-posts the Ready condition, so kube-controller-manager's node
// lifecycle controller never marks the node NotReady or taints it. (A real kubelet reports
// Ready=False while the CNI configuration is missing; the stand-in stays Ready, and pods wait
// for the configuration instead, which is what matters for the lab.)
//
// # Pods
//
// An informer with the field selector spec.nodeName=<NodeName> feeds a rate-limited work
// queue; each key is reconciled level-based (the queue never runs one key twice at a time):
//
//   - a new Pod gets a sandbox: a named network namespace "<PodNetNSPrefix><10 hex>" made
//     like `ip netns add`, then, once a CNI configuration exists in CNIConfDir (the node agent
//     writes 10-ovs-sdn.conflist when it is ready; the lexically first .conf/.conflist/.json
//     is used, as containerd and CRI-O do), CNI ADD through libcni with ifname eth0, the
//     K8S_POD_* CNI_ARGS and the portMappings / pod-annotations runtime config (DEL gets
//     the ones cached at ADD, so portmap removes its hostPort rules). The plugins are
//     exec'd in Config.NodeNetNS (the caller's netns when unset), where a real node's
//     runtime runs them, with CNI_NETNS=/run/netns/<name>: a chained portmap writes its
//     rules into the node's iptables;
//   - servers start inside the pod netns for every declared containerPort: TCP and UDP
//     listeners that answer with the pod name, and one SCTP watcher (see below);
//   - the status reports podIP/podIPs, hostIP, phase Running, Initialized, Ready,
//     ContainersReady and PodReadyToStartContainers, and a running containerStatus for each
//     container (so `kubectl get pods` shows 1/1 Running).
//
// A failing ADD (or a missing CNI configuration) leaves the pod Pending with
// PodReadyToStartContainers=False carrying the error, emits a Warning Event
// FailedCreatePodSandBox, and is retried with exponential backoff (100 ms … 5 s).
//
// A Pod with a deletionTimestamp (or one that disappeared) is torn down — servers stopped,
// CNI DEL, netns deleted — and then force-deleted (grace period 0, UID precondition), which
// is how a kubelet finalizes pod deletion. hostNetwork pods get no sandbox: their servers run
// in Config.NodeNetNS and their IP is the node IP.
//
// The sandbox (container) ID is derived from the pod UID rather than random, so a restarted
// stand-in re-runs ADD for the same container — which a CNI plugin must answer with the same
// result — instead of leaking the first attachment. For the same reason the pod netns name
// is derived from it. Netns under PodNetNSPrefix that belong to no bound pod are deleted at
// start-up. When Run returns, every sandbox it holds is torn down (best-effort CNI DEL).
//
// # Probes and SCTP
//
// Probe runs a client inside a pod's netns (a socket belongs to the netns it was created in,
// so it is created on a thread switched in with ns.Do and then used from any goroutine) and
// answers Connected, Refused (TCP RST, ICMP port unreachable for UDP, or an SCTP INIT to a
// port the destination pod does not declare — a real SCTP stack would ABORT it) or TimedOut
// (a silent drop, e.g. by NetworkPolicy).
//
// The kernel here has no SCTP sockets, so SCTP is probed one level lower: the client sends
// SCTP INIT chunks (CRC32c-checksummed) through a raw IPv4 socket of protocol 132, and every
// pod runs a watcher on a raw IPv4 socket of protocol 132 that records (destination port,
// source address, time) of each INIT arriving in its netns. A raw socket rather than an
// AF_PACKET one: it sees only packets the netns accepted for local delivery (not its own
// outgoing ones), gets them reassembled, and its presence stops the kernel from answering
// with ICMP protocol-unreachable. SCTPSeen asks the destination's kubelet; a Group spans the
// kubelets of a multi-node lab.
package kubelet
