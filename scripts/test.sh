#!/usr/bin/env bash
# Every test: formatting, lints, unit tests and the integration tests against the real
# registry. Installs docker-registry, skopeo and curl first where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
