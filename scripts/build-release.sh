#!/usr/bin/env bash
# The release build of fleet-delete-guard: the Dockerfile's build stage runs exactly
# this, and so does CI (.ci/run), so the binary the image ships is the one CI built and
# tested (CI runs the end-to-end tests against it).
#
#   scripts/build-release.sh deps    # dependencies only (Docker's cached layer; needs no src/)
#   scripts/build-release.sh build   # the binary, copied to $OUT (default target/image)
#   scripts/build-release.sh check   # smoke test of $OUT/fleet-delete-guard
#   scripts/build-release.sh         # build + check
#
# No container engine runs on the project's machines; with one:
#   docker build -t fleet-delete-guard:0.1.0 .
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

OUT=${OUT:-target/image}
TARGET=${CARGO_TARGET_DIR:-target}
BIN=fleet-delete-guard
# Cargo.toml's [profile.dist]: release, debug info stripped, symbols kept.
PROFILE=dist
# The shipped binary's size limit (README); `check` fails above it.
MAX_BYTES=$((25 * 1024 * 1024))

# Paths of the [[bench]], [[test]] and [[example]] targets Cargo.toml declares: cargo
# wants their files to exist just to read the manifest.
declared_targets() {
  awk '
    function emit() {
      if (kind != "") {
        if (path == "") path = (kind == "bench" ? "benches" : (kind == "test" ? "tests" : "examples")) "/" name ".rs"
        print path
      }
      kind = ""; name = ""; path = ""
    }
    /^\[\[(bench|test|example)\]\]/ { emit(); kind = $0; gsub(/[][]/, "", kind); next }
    /^\[/ { emit(); next }
    kind != "" && /^name *=/ { split($0, a, "\""); name = a[2] }
    kind != "" && /^path *=/ { split($0, a, "\""); path = a[2] }
    END { emit() }
  ' Cargo.toml
}

deps() {
  # Build every dependency from Cargo.toml + Cargo.lock alone (Docker's build stage,
  # before the sources are copied). Missing sources get empty stubs; the crate's own
  # (src/) are removed afterwards, with their artifacts, so the real build recompiles
  # the crate whatever the files' timestamps. The other stubs (the test-only workspace
  # member, declared benches, tests and examples) stay: the manifest needs them and
  # the image never builds them.
  local stubs=()
  for f in src/main.rs src/lib.rs tests/support/api-double/src/lib.rs $(declared_targets); do
    if [ ! -e "$f" ]; then
      mkdir -p "$(dirname "$f")"
      case "$f" in
        src/lib.rs | */src/lib.rs) : >"$f" ;;
        *) echo 'fn main() {}' >"$f" ;;
      esac
      case "$f" in src/*) stubs+=("$f") ;; esac
    fi
  done
  cargo build --profile "$PROFILE" --locked --bin "$BIN"
  for f in "${stubs[@]}"; do rm -f "$f"; done
  rm -rf "$TARGET/$PROFILE"/.fingerprint/fleet-delete-guard-* \
    "$TARGET/$PROFILE"/deps/fleet_delete_guard-* "$TARGET/$PROFILE"/deps/libfleet_delete_guard-* \
    "$TARGET/$PROFILE/$BIN"
}

build() {
  cargo build --profile "$PROFILE" --locked --bin "$BIN"
  mkdir -p "$OUT"
  cp "$TARGET/$PROFILE/$BIN" "$OUT/$BIN"
  echo "built $OUT/$BIN ($(wc -c <"$OUT/$BIN") bytes)"
}

check() {
  local bin="$OUT/$BIN" tmp
  "$bin" --version
  local size
  size=$(wc -c <"$bin")
  if [ "$size" -gt "$MAX_BYTES" ]; then
    echo "$bin is $size bytes, over the $MAX_BYTES the image allows (debug info left in?)" >&2
    return 1
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  "$bin" certs --dns-name fleet-delete-guard.cattle-fleet-system.svc --out-dir "$tmp" >/dev/null
  test -s "$tmp/tls.crt" && test -s "$tmp/tls.key" && test -s "$tmp/ca.crt"
  echo "smoke test of $bin passed"
}

case "${1:-all}" in
  deps) deps ;;
  build) build ;;
  check) check ;;
  all) build && check ;;
  *) echo "usage: $0 [deps|build|check|all]" >&2; exit 2 ;;
esac
