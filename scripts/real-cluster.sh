#!/usr/bin/env bash
# Builds the real control plane the real-cluster suite runs, from the pinned Go module
# tests/real-cluster/go.mod (+ go.sum): etcd (go.etcd.io/etcd/server/v3, the version
# k8s.io/kubernetes pins), kube-apiserver and kube-controller-manager (k8s.io/kubernetes).
# No sources are vendored: the Go module proxy serves them, `go build` compiles them.
#
#   scripts/real-cluster.sh build     # into the cache below (a no-op when up to date)
#   scripts/real-cluster.sh test      # build, then run the real-cluster suite
#   scripts/real-cluster.sh env       # print REAL_CLUSTER_BIN=… for your shell
#
# The stamp file records the inputs (go.mod, go.sum, `go version`, the flags): a
# second run with the same inputs does nothing. A cold build takes about
# 20 minutes on a 2-core machine (docs/src/real-cluster.md has the measured figures).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
module=tests/real-cluster
# Outside the work tree, so every clone on this machine (CI's too) reuses one build.
cache=${FLEET_DELETE_GUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleet-delete-guard}
bin=${REAL_CLUSTER_BIN:-$cache/real-cluster/bin}
k8s_version=v1.36.3
minor=36

export GOTOOLCHAIN=local GOFLAGS=-modcacherw CGO_ENABLED=0

# What the binaries are made from: the module's pins, the Go toolchain, the flags.
flags="-trimpath -tags selinux,notest version=$k8s_version"
stamp_of() {
  { cat "$module/go.mod" "$module/go.sum"; go version; echo "$flags"; } | sha256sum | cut -d' ' -f1
}

build() {
  if ! command -v go >/dev/null 2>&1; then
    echo "real-cluster: go is not installed (Go >= 1.26 builds the control plane)" >&2
    exit 1
  fi
  mkdir -p "$bin"
  local want have=""
  want=$(stamp_of)
  [ -f "$bin/.stamp" ] && have=$(cat "$bin/.stamp")
  if [ "$want" = "$have" ] && [ -x "$bin/etcd" ] && [ -x "$bin/kube-apiserver" ] \
      && [ -x "$bin/kube-controller-manager" ]; then
    echo "real-cluster: binaries up to date in $bin"
    return 0
  fi
  echo "real-cluster: building etcd, kube-apiserver, kube-controller-manager ($k8s_version) into $bin"
  local start=$SECONDS
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  (cd "$module" && go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  # go.etcd.io/etcd/server/v3 is itself package main; `go build -o dir/` would name it
  # after the module's last element.
  (cd "$module" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
  echo "$want" >"$bin/.stamp"
  echo "real-cluster: built in $((SECONDS - start)) s"
}

case "${1:-build}" in
  build) build ;;
  env) echo "REAL_CLUSTER_BIN=$bin" ;;
  test)
    build
    # The suite installs the Helm chart with the real helm too.
    scripts/build-helm.sh
    REAL_CLUSTER_BIN=$bin cargo test --locked --features real-cluster --test real_cluster -- --test-threads=1
    ;;
  *) echo "usage: $0 [build|test|env]" >&2; exit 2 ;;
esac
