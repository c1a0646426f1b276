#!/usr/bin/env bash
# Runs every check of the workspace, on a fresh machine as on a laptop:
# installs what the tests need, then format, lints, build, doc tests, a smoke
# run of the embed example, and the unit + integration tests (nextest) last.
#
# Tests that need a real service (Docker, pebble) fail loudly under CI=true
# when it is missing, and skip with a printed reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A one-off build keeps nothing from incremental compilation but its cache
# (3 GB here); CI builds once.
[ "${CI:-}" = "true" ] && export CARGO_INCREMENTAL=0

disk() { df -h --output=avail,target . 2>/dev/null | tail -1 | awk '{print "free disk: " $1 " on " $2}'; }

step "tools"
disk
command -v cargo >/dev/null || { echo "cargo is required: install Rust with rustup" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest is missing; installing it from crates.io"
  cargo install --locked cargo-nextest
fi
bash scripts/deps.sh

step "format"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings

step "build (workspace, including the hello function the tests run)"
cargo build --workspace --all-targets --all-features --quiet
# The Docker tests package hello and wsecho as FROM-scratch images around static binaries.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet -p hello -p wsecho --target x86_64-unknown-linux-gnu
# The examples as the README runs them (default features), for the quickstart test.
cargo build --quiet --examples

step "doc tests"
cargo test --workspace --all-features --doc --quiet

step "smoke: the embed example deploys hello, calls it and deletes it"
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
PILOTLIGHT_DATA="$data" RUST_LOG=warn cargo run --quiet --example embed

step "unit and integration tests"
disk
profile=default
[ "${CI:-}" = "true" ] && profile=ci
# Screenshots of the browser test land in target/test-artifacts/ui/.
cargo nextest run --workspace --all-features --profile "$profile"
