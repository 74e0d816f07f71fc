#!/usr/bin/env bash
# The link order of the shipped binary's functions (build.rs, link/symbol-order.txt):
# the functions the server runs, hottest first, so they share code pages instead of
# being scattered through the whole binary (BENCHMARKS.md, "Code layout").
#
#   scripts/symbol-order.sh write        # dist build, callgrind run of the server, new list
#   scripts/symbol-order.sh check [BIN]  # how much of the list BIN has (default: the dist
#                                        # binary); fails under 50 %, warns under 90 %
#
# `write` runs the peer bench's quick mode (benches/peer.rs: start-up, readiness,
# Fleet-managed reviews, /metrics, and counting against the API double with 1,000
# BundleDeployments) with each fleet-delete-guard under valgrind's callgrind, then lists
# every function of the binary that ran, by instructions spent in it (most first).
# Needs valgrind and wrk (Debian: apt-get install valgrind wrk). The names carry hashes
# of the toolchain, Cargo.lock and the profile: after a toolchain or dependency update,
# run `write` again (a stale list costs memory, never correctness: names the binary
# lacks are skipped). Takes about 10 minutes on 2 cores, most of it the LTO build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
list=link/symbol-order.txt
bin=${CARGO_TARGET_DIR:-$root/target}/dist/fleet-delete-guard

# Self cost per function of object BIN from a callgrind file (positions: line,
# events: Ir, strings uncompressed); prints "cost name".
self_cost() {
  awk -v BIN="$1" '
    /^ob=/ { ob = substr($0, 4); next }
    /^fn=/ { fn = substr($0, 4); next }
    /^calls=/ { skip = 1; next }
    /^[0-9+*-]/ {
      if (skip) { skip = 0; next }
      if (ob == BIN && fn !~ /^0x/) cost[fn] += $2
      next
    }
    END { for (f in cost) print cost[f], f }
  ' "${@:2}"
}

# The binary's function symbols (names only).
functions_of() {
  nm --defined-only "$1" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u
}

write() {
  for tool in valgrind wrk nm; do
    command -v "$tool" >/dev/null || { echo "symbol-order: $tool is needed (apt-get install valgrind wrk binutils)" >&2; exit 1; }
  done
  cargo build --locked --profile dist --bin fleet-delete-guard
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cat >"$work/server" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --demangle=no --compress-strings=no --dump-instr=no \
  --callgrind-out-file=$work/callgrind.%p "$bin" "\$@"
WRAP
  chmod +x "$work/server"
  # --peer-bin is required by the bench's command line; the peer is not run here.
  cargo bench --locked --bench peer -- --quick --servers off,on \
    --server-bin "$work/server" --peer-bin /bin/false >"$work/bench.log" 2>&1 ||
    { cat "$work/bench.log" >&2; exit 1; }
  # Two groups: what a server with --counting=false runs (start-up, TLS, reviews,
  # /metrics), then what counting adds (kube client, watches, resync, patcher). A server
  # touches the first group's pages whatever it does; only counting touches the second.
  local off on
  off=$(grep -l '^cmd:.* serve .*--counting=false' "$work"/callgrind.* || true)
  on=$(grep -L -e '--counting=false' $(grep -l '^cmd:.* serve ' "$work"/callgrind.*) || true)
  [ -n "$off" ] && [ -n "$on" ] || { echo "symbol-order: callgrind runs of both servers are needed; bench log:" >&2; cat "$work/bench.log" >&2; exit 1; }
  # shellcheck disable=SC2086 # one file name per word
  self_cost "$bin" $off | sort -k1,1nr -k2,2 | awk '{ print $2 }' >"$work/order"
  # shellcheck disable=SC2086
  self_cost "$bin" $on | sort -k1,1nr -k2,2 | awk '{ print $2 }' |
    awk 'NR == FNR { seen[$0] = 1; next } !($0 in seen)' "$work/order" - >>"$work/order"
  [ -s "$work/order" ] || { echo "symbol-order: no function of $bin ran" >&2; exit 1; }
  mv "$work/order" "$list"
  echo "symbol-order: $(wc -l <"$list") functions in $list; rebuild (cargo build --profile dist) to use them"
}

check() {
  local target=${1:-$bin}
  [ -f "$list" ] || { echo "symbol-order: $list is missing" >&2; exit 1; }
  [ -f "$target" ] || { echo "symbol-order: no binary at $target" >&2; exit 1; }
  local have total
  total=$(grep -c . "$list")
  have=$(functions_of "$target" | comm -12 - <(sort -u "$list") | wc -l)
  local pct=$((100 * have / total))
  echo "symbol-order: $target has $have of the $total functions of $list ($pct %)"
  if [ "$pct" -lt 50 ]; then
    echo "symbol-order: the list is stale (toolchain, Cargo.lock or profile changed): run scripts/symbol-order.sh write" >&2
    exit 1
  elif [ "$pct" -lt 90 ]; then
    echo "symbol-order: warning: the list is getting stale; scripts/symbol-order.sh write renews it" >&2
  fi
}

case "${1:-}" in
  write) write ;;
  check) check "${2:-}" ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
