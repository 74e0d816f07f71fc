#!/usr/bin/env bash
# Builds the helm CLI pinned in tests/helm/go.mod (a Go `tool` dependency) into
# target/tools/bin/helm. The chart tests (tests/chart.rs, feature `external-tools`)
# run that binary. A no-op when the cached build matches go.mod, go.sum and `go version`.
#
# Needs: Go (the version in tests/helm/go.mod's `go` line or newer) and the Go
# module proxy (or a warm module cache). Takes ~5 CPU-minutes cold.
set -euo pipefail
cd "$(dirname "$0")/.."

out="$PWD/target/tools/bin/helm"
mod="$PWD/tests/helm"
# Built once per machine into a cache outside the work tree (as scripts/real-cluster.sh
# does), keyed by the pins and the toolchain; each clone gets a copy in target/.
cache=${FLEET_DELETE_GUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleet-delete-guard}
stamp=$({ cat "$mod/go.mod" "$mod/go.sum"; go version; } | sha256sum | cut -c1-16)
cached="$cache/helm/$stamp/helm"

if [ ! -x "$cached" ]; then
  mkdir -p "$(dirname "$cached")"
  # -modcacherw: the module cache stays removable; GOTOOLCHAIN=local: never download a
  # toolchain behind the user's back; -trimpath: no local paths in the binary.
  (cd "$mod" && GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" \
    go build -trimpath -o "$cached.tmp" helm.sh/helm/v4/cmd/helm)
  mv "$cached.tmp" "$cached"
fi
if ! cmp -s "$cached" "$out" 2>/dev/null; then
  mkdir -p "$(dirname "$out")"
  cp "$cached" "$out.tmp" && mv "$out.tmp" "$out"
fi
"$out" version --short
