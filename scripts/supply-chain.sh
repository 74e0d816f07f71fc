#!/usr/bin/env bash
# Supply-chain checks with cargo-deny and deny.toml (SECURITY.md, "Supply chain").
#
#   scripts/supply-chain.sh                    all four checks; fails if the RustSec
#                                              advisory database cannot be fetched
#   SUPPLY_CHAIN_OFFLINE=1 scripts/supply-chain.sh
#                                              no network: licenses, bans, sources from
#                                              the local cargo cache; advisories are
#                                              NOT checked and the script says so
#
# Needs cargo-deny 0.20 (`cargo install cargo-deny --locked`; about 4 CPU-minutes to
# build, so CI images should carry it rather than build it per run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "supply-chain: cargo-deny is not installed (cargo install cargo-deny --locked)" >&2
  exit 2
fi

if [ "${SUPPLY_CHAIN_OFFLINE:-0}" = 1 ]; then
  echo "== cargo deny --frozen check licenses bans sources"
  cargo deny --frozen check licenses bans sources
  echo "supply-chain: WARNING: advisories (RustSec) NOT checked: offline" >&2
else
  echo "== cargo deny --locked check (advisories licenses bans sources)"
  cargo deny --locked check advisories licenses bans sources
fi
