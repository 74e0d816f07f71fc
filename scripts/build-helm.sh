#!/usr/bin/env bash
# Builds the helm CLI pinned in tests/helm/go.mod (a Go `tool` dependency) into
# target/tools/bin/helm. The chart tests (tests/chart.rs, feature `external-tools`)
# run that binary. A no-op when the binary is newer than go.mod and go.sum.
#
# Needs: Go (the version in tests/helm/go.mod's `go` line or newer) and the Go
# module proxy (or a warm module cache). Takes ~5 CPU-minutes cold.
set -euo pipefail
cd "$(dirname "$0")/.."

out="$PWD/target/tools/bin/helm"
mod="$PWD/tests/helm"

if [ -x "$out" ] && [ "$out" -nt "$mod/go.mod" ] && [ "$out" -nt "$mod/go.sum" ]; then
  echo "helm up to date: $out"
  exit 0
fi

mkdir -p "$(dirname "$out")"
cd "$mod"
# -modcacherw: the module cache stays removable; GOTOOLCHAIN=local: never download a
# toolchain behind the user's back; -trimpath: no local paths in the binary.
GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" \
  go build -trimpath -o "$out.tmp" helm.sh/helm/v4/cmd/helm
mv "$out.tmp" "$out"
"$out" version --short
