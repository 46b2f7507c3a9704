#!/usr/bin/env bash
# Rewrites fixtures/registry (and fixtures/expected.json) with a layout written by the real
# registry: Debian's docker-registry on 127.0.0.1 with a temporary root, filled by skopeo and
# curl through its API. The world it builds is tests/integration/world.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh
cargo test --test integration regenerate_fixtures -- --ignored --exact
find fixtures/registry -type f | wc -l | xargs echo "files in fixtures/registry:"
