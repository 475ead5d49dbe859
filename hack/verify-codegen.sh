#!/usr/bin/env bash
# Fails when a generated file is stale: regenerates into a scratch copy of the tree and diffs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
tar -C "$ROOT" --exclude=./_output --exclude=./.git -cf - . | tar -C "$TMP" -xf -
"$ROOT/hack/update-codegen.sh" "$TMP" >/dev/null
for d in pkg/client pkg/apis/network/crds pkg/apis/network/v1; do
  if ! diff -r "$ROOT/$d" "$TMP/$d" >/dev/null; then
    diff -r "$ROOT/$d" "$TMP/$d" | head -40
    echo "generated files under $d are stale: run 'make generate'" >&2
    exit 1
  fi
done
echo "generated files are up to date"
