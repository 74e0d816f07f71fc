# syntax=docker/dockerfile:1
#
# fleet-delete-guard image: `docker build -t fleet-delete-guard:0.1.0 .`
# The build stage runs scripts/build-release.sh, which CI runs too: the binary in the
# image is built the way the tested one was.
# The binary is Cargo's `dist` profile: release without debug info (symbols kept, so
# backtraces name functions); scripts/build-release.sh check refuses one over 25 MB.

# ---- build -------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first: this layer is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY tests/support/api-double/Cargo.toml tests/support/api-double/Cargo.toml
COPY scripts/build-release.sh scripts/build-release.sh
RUN scripts/build-release.sh deps

# Then the sources (tests are not built into the image), and the link order of the
# server's functions that build.rs hands the linker (link/symbol-order.txt).
COPY build.rs build.rs
COPY link link
COPY src src
RUN OUT=/out scripts/build-release.sh build && OUT=/out scripts/build-release.sh check

# ---- run ---------------------------------------------------------------------------
# glibc (the binary links it dynamically: distroless/static has none), CA
# certificates, /etc/passwd entry for uid 65532, nothing else (no shell); non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/fleet-delete-guard /usr/local/bin/fleet-delete-guard
USER 65532:65532
# 9443: HTTPS, POST /validate. 8080: /metrics, /healthz, /readyz.
EXPOSE 9443 8080
ENTRYPOINT ["/usr/local/bin/fleet-delete-guard", "serve"]
