#!/usr/bin/env bash
# Every test: formatting, lints, unit tests and the integration tests against the real
# registry. Installs docker-registry, skopeo and curl first where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The tests' runs keep their manifest caches in a folder of their own, removed after, not in
# the user's ~/.cache/regsweep (one file for each temporary root would pile up there).
XDG_CACHE_HOME=$(mktemp -d)
export XDG_CACHE_HOME
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
cargo test --all-targets --locked
