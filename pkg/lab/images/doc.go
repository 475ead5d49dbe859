// Package images builds the container images of sdn-lab's real nodes on this machine,
// without Docker or a registry, as one docker-archive that `ctr -n k8s.io images import`
// loads into each node's containerd:
//
//   - sdn-node and sdn-controller from their definitions in images/ (package
//     github.com/ovs-sdn/ovs-sdn/images): the Debian suite of the Dockerfile's base image
//     with the packages of packages.txt, built by mmdebstrap from Debian's archive, and the
//     binaries of binaries.txt built the way the Dockerfile builds them — the lists exist
//     once, so the lab runs what a Docker build of the Dockerfiles would hold;
//   - registry.k8s.io/pause:3.10, the sandbox image: our own static pause (./pause);
//   - registry.k8s.io/e2e-test-images/agnhost:2.56 (the tag Kubernetes v1.34.4's e2e tests
//     use): agnhost built by `make tools` on the sdn-controller image's Debian base;
//   - registry.k8s.io/coredns/coredns:<CoreDNSVersion>, the containerd lab's cluster DNS:
//     CoreDNS built by `make tools` (tools/coredns) on the same base.
//
// # Layers and cache
//
// An image is at most two uncompressed layers: the Debian root file system (shared by every
// image with the same suite and packages) and a layer with the image's own files. Layers
// are stored by digest in <CacheDir>/layers; a Debian root file system is found again by
// its recipe (<CacheDir>/debian/<key>: suite, package list, mmdebstrap command), so it is
// built once (35 s for sdn-node's here) and reused until its package list changes (delete
// the cache to pick up Debian updates). Files layers are rebuilt each time (a tar of the
// binaries, fractions of a second) and land on the same digest when the binaries did not
// change: everything is written in sorted order, owned by root, with one fixed time. The
// archive is named by the digest of the images it holds, so a second Build of the same
// inputs writes nothing.
package images
