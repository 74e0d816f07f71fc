#!/usr/bin/env bash
# Installs (or upgrades) the chart charts/fleet-delete-guard into the cluster of a
# kubeconfig with the helm built by scripts/build-helm.sh, and waits for it; the hook
# for the real-cluster suite (tests/support/helm.rs runs the same commands).
#
#   scripts/helm-install.sh KUBECONFIG [VALUES.yaml...]     # install or upgrade
#   scripts/helm-install.sh --uninstall KUBECONFIG          # uninstall
#
# Release fleet-delete-guard in cattle-fleet-system. $HELM overrides the helm binary.
set -euo pipefail
cd "$(dirname "$0")/.."

helm=${HELM:-target/tools/bin/helm}
if [ ! -x "$helm" ]; then
  echo "helm not found at $helm: run scripts/build-helm.sh" >&2
  exit 2
fi

usage() {
  echo "usage: $0 KUBECONFIG [VALUES.yaml...] | $0 --uninstall KUBECONFIG" >&2
  exit 2
}

if [ "${1:-}" = "--uninstall" ]; then
  [ $# -eq 2 ] || usage
  exec "$helm" uninstall fleet-delete-guard --namespace cattle-fleet-system \
    --kubeconfig "$2" --wait
fi

[ $# -ge 1 ] || usage
kubeconfig=$1
shift
values=()
for v in "$@"; do values+=(--values "$v"); done
exec "$helm" upgrade --install fleet-delete-guard charts/fleet-delete-guard \
  --namespace cattle-fleet-system --kubeconfig "$kubeconfig" --wait --timeout 5m \
  "${values[@]}"
