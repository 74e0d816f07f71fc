#!/usr/bin/env bash
# Shows that scripts/supply-chain.sh's snapshot check passes on this commit and fails
# when it should (SECURITY.md, "Supply chain"). Works on a clean clone of HEAD in a
# temporary directory; needs cargo-deny and crates.io (for case 2's `cargo update`).
#
#   1. HEAD as committed                            -> passes
#   2. slab pinned to 0.4.10 (RUSTSEC-2025-0047)    -> fails: vulnerability (and yanked)
#   3. tokio missing from the snapshot's crate list -> fails: crate not covered
#   4. snapshot dated 200 days ago                  -> fails: snapshot too old
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SUPPLY_CHAIN_ADVISORY_DB=snapshot
failed=0

# case NAME EXPECTED_STATUS EXPECTED_TEXT SETUP: runs SETUP in a fresh clone, then the check.
case_() {
  local name=$1 want=$2 text=$3 setup=$4 dir=$tmp/$1 rc=0
  git clone --quiet "$PWD" "$dir"
  (cd "$dir" && eval "$setup")
  (cd "$dir" && scripts/supply-chain.sh) >"$dir.log" 2>&1 || rc=$?
  if [ "$rc" = "$want" ] && grep -q -- "$text" "$dir.log"; then
    echo "ok   $name: exit $rc, output has '$text'"
  else
    echo "FAIL $name: exit $rc (want $want), '$text' $(grep -q -- "$text" "$dir.log" && echo found || echo missing); log:"
    tail -20 "$dir.log"
    failed=1
  fi
}

case_ clean 0 "advisories ok" ":"
case_ vulnerable 1 "RUSTSEC-2025-0047" "cargo update --quiet -p slab --precise 0.4.10"
case_ uncovered 1 "does not cover: tokio" \
  "sed -i '/^tokio\$/d' supply-chain/advisory-db/crates.txt"
case_ stale 1 "days old (limit 180)" \
  "sed -i \"s/^commit-date = .*/commit-date = \\\"\$(date -u -d '200 days ago' +%FT%TZ)\\\"/\" supply-chain/advisory-db/SOURCE"

exit "$failed"
