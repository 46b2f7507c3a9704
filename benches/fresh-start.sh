#!/usr/bin/env bash
# The README's two commands as a newcomer runs them: a fresh clone of this checkout's HEAD and an
# empty target folder (crates already fetched into ~/.cargo, the peers already installed, as on
# a machine that ran scripts/install-peers.sh once). Prints the wall time of each.
#
#   benches/fresh-start.sh [WORKDIR]          (/var/tmp/regsweep-bench/fresh-start)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-${BENCH_DIR:-/var/tmp/regsweep-bench}/fresh-start}
rm -rf "$WORK" && git clone -q . "$WORK"
cd "$WORK"
cargo fetch --locked -q
timed() {
  local start end
  start=$(date +%s)
  "$@" >"$WORK/last.out" 2>&1 || { tail -20 "$WORK/last.out"; exit 1; }
  end=$(date +%s)
  echo "$(( end - start )) s: $*"
}
timed cargo run --locked -- gc --dry-run --grace 0 --root fixtures/registry
timed env CI=true scripts/test.sh
