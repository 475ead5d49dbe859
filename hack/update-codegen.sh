#!/usr/bin/env bash
# Regenerates every generated file: deepcopy, typed clientset, listers, informers
# (k8s.io/code-generator) and the CRD YAML (controller-gen). The tools are pinned in go.mod
# (`tool` directives), so the output only changes when the API types or the pins change.
# hack/verify-codegen.sh runs this into a scratch copy and fails on any difference.
set -euo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT"
MOD=github.com/ovs-sdn/ovs-sdn
API=$MOD/pkg/apis/network/v1
HDR=hack/boilerplate.go.txt

rm -rf pkg/client pkg/apis/network/crds/*.yaml pkg/apis/network/v1/zz_generated.deepcopy.go
go tool deepcopy-gen --go-header-file "$HDR" --output-file zz_generated.deepcopy.go ./pkg/apis/network/v1
go tool client-gen --go-header-file "$HDR" --clientset-name versioned --input-base "" \
  --input "$API" --output-pkg "$MOD/pkg/client/clientset" --output-dir pkg/client/clientset
go tool lister-gen --go-header-file "$HDR" --output-pkg "$MOD/pkg/client/listers" \
  --output-dir pkg/client/listers "$API"
go tool informer-gen --go-header-file "$HDR" \
  --versioned-clientset-package "$MOD/pkg/client/clientset/versioned" \
  --listers-package "$MOD/pkg/client/listers" \
  --output-pkg "$MOD/pkg/client/informers" --output-dir pkg/client/informers "$API"
go tool controller-gen crd:crdVersions=v1 paths=./pkg/apis/network/v1/... \
  output:crd:artifacts:config=pkg/apis/network/crds
