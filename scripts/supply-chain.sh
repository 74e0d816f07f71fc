#!/usr/bin/env bash
# Supply-chain checks with cargo-deny and deny.toml (SECURITY.md, "Supply chain").
#
#   scripts/supply-chain.sh          licenses, bans, sources; then advisories (RustSec)
#                                    from the live database if github.com answers, else
#                                    from the vendored snapshot supply-chain/advisory-db
#   scripts/supply-chain.sh --ci     the same, installing cargo-deny first if it is
#                                    missing (.ci/run runs this)
#
#   SUPPLY_CHAIN_OFFLINE=1           no network at all: crates from the local cargo cache
#                                    (--frozen), advisories from the snapshot
#   SUPPLY_CHAIN_ADVISORY_DB=live|snapshot
#                                    force one advisory database (default: live when
#                                    reachable); live fails if it cannot be fetched
#
# With the snapshot, the check fails if a crates.io crate in Cargo.lock is not in
# supply-chain/advisory-db/crates.txt (a new dependency: refresh the snapshot with
# scripts/refresh-advisory-db.sh) or if the snapshot is older than 180 days; it warns
# when it is older than 30 days.
set -euo pipefail
cd "$(dirname "$0")/.."

deny_version=0.20.2
warn_days=30
fail_days=180
snapshot=supply-chain/advisory-db
live_url=https://github.com/RustSec/advisory-db

ci=0
if [ "${1:-}" = --ci ]; then
  ci=1
elif [ $# -ne 0 ]; then
  sed -n '2,19p' "$0" >&2
  exit 2
fi

if ! cargo deny --version 2>/dev/null | grep -q "^cargo-deny ${deny_version%.*}\."; then
  if [ "$ci" = 1 ]; then
    echo "== cargo install cargo-deny --locked --version $deny_version"
    start=$SECONDS
    cargo install cargo-deny --locked --version "$deny_version"
    echo "supply-chain: cargo-deny installed in $((SECONDS - start)) s"
  else
    echo "supply-chain: cargo-deny ${deny_version%.*} is not installed" \
      "(cargo install cargo-deny --locked --version $deny_version, or --ci)" >&2
    exit 2
  fi
fi

if [ "${SUPPLY_CHAIN_OFFLINE:-0}" = 1 ]; then
  net=--frozen
  db=${SUPPLY_CHAIN_ADVISORY_DB:-snapshot}
else
  net=--locked
  db=${SUPPLY_CHAIN_ADVISORY_DB:-auto}
fi

echo "== cargo deny $net check licenses bans sources"
cargo deny "$net" check licenses bans sources

if [ "$db" = auto ]; then
  if timeout 60 git ls-remote --heads "$live_url" main >/dev/null 2>&1; then
    db=live
  else
    echo "supply-chain: $live_url is unreachable; advisories from the snapshot"
    db=snapshot
  fi
fi

case $db in
live)
  echo "== cargo deny --locked check advisories (live RustSec database)"
  cargo deny --locked check advisories
  ;;
snapshot)
  commit=$(sed -n 's/^commit = "\(.*\)"$/\1/p' "$snapshot/SOURCE")
  commit_date=$(sed -n 's/^commit-date = "\(.*\)"$/\1/p' "$snapshot/SOURCE")
  age_days=$((($(date +%s) - $(date -d "$commit_date" +%s)) / 86400))
  echo "== advisories from $snapshot: RustSec/advisory-db $commit of $commit_date ($age_days days old)"

  # Every crates.io crate in Cargo.lock must be one the snapshot was built for.
  uncovered=$(awk '/^\[\[package\]\]/ { name = "" }
       /^name = / { name = $3 }
       /^source = "registry\+/ { gsub(/"/, "", name); print name }' Cargo.lock |
    sort -u | comm -23 - "$snapshot/crates.txt")
  if [ -n "$uncovered" ]; then
    echo "supply-chain: FAIL: crates in Cargo.lock that the advisory snapshot does not cover:" \
      $uncovered >&2
    echo "supply-chain: run scripts/refresh-advisory-db.sh <advisory-db checkout or mirror>" >&2
    exit 1
  fi
  if [ "$age_days" -gt "$fail_days" ]; then
    echo "supply-chain: FAIL: the advisory snapshot is $age_days days old (limit $fail_days);" \
      "run scripts/refresh-advisory-db.sh" >&2
    exit 1
  elif [ "$age_days" -gt "$warn_days" ]; then
    echo "supply-chain: WARNING: the advisory snapshot is $age_days days old (over $warn_days):" \
      "advisories published after $commit_date are not checked" >&2
  fi

  # cargo-deny reads <db-path>/advisory-db-<hash of the default URL>, a git repository.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  repo=$tmp/db/advisory-db-3157b0e258782691
  mkdir -p "$repo"
  cp -R "$snapshot/crates" "$repo/crates"
  git -C "$repo" init --quiet
  git -C "$repo" add crates
  GIT_COMMITTER_DATE=$commit_date GIT_AUTHOR_DATE=$commit_date \
    git -C "$repo" -c user.name=supply-chain -c user.email=supply-chain@localhost \
    commit --quiet -m "snapshot of RustSec/advisory-db $commit"
  sed "/^\[advisories\]/a db-path = \"$tmp/db\"" deny.toml >"$tmp/deny.toml"

  echo "== cargo deny --frozen check advisories (snapshot)"
  cargo deny --frozen --config "$tmp/deny.toml" check advisories
  ;;
*)
  echo "supply-chain: SUPPLY_CHAIN_ADVISORY_DB must be live or snapshot" >&2
  exit 2
  ;;
esac
