#!/usr/bin/env bash
# Builds the reference, the mdBook in docs/, into docs/book/ (ignored by git).
#
#   scripts/build-docs.sh         # needs mdbook $mdbook_version on PATH
#   scripts/build-docs.sh --ci    # installs it first when missing (cargo install,
#                                 # from crates.io, into ~/.cargo/bin: cached)
#
# The links of README.md and the book are checked by tests/docs.rs (part of
# `cargo test --workspace --locked`), which needs no mdbook.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

mdbook_version=0.5.4

if ! mdbook --version 2>/dev/null | grep -q "^mdbook v$mdbook_version\$"; then
  if [ "${1:-}" = --ci ]; then
    echo "== cargo install mdbook --locked --version $mdbook_version"
    start=$SECONDS
    # Only the book builder and its search index: no `serve`/`watch` (a web server
    # and file watchers CI does not need).
    cargo install mdbook --locked --version "$mdbook_version" \
      --no-default-features --features search
    echo "docs: mdbook installed in $((SECONDS - start)) s"
  else
    echo "docs: mdbook $mdbook_version is not installed" \
      "(cargo install mdbook --locked --version $mdbook_version, or --ci)" >&2
    exit 2
  fi
fi

mdbook build docs
echo "docs: built docs/book/index.html"
