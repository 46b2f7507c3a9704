#!/usr/bin/env bash
# The scan-mark-plan core at sizes no disk here holds: examples/synthetic.rs puts SIZES blobs
# through the memory backend of the storage seam (no file created) and runs what
# `gc --dry-run -m --grace 0` runs. One line of JSON per size: the peak the run adds above the
# backend's own memory, per blob, and the time per blob. /usr/bin/time adds the whole process.
#
#   benches/synthetic.sh [SIZES...]          (100000 1000000 10000000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile profiling -q --example synthetic
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000 10000000)
for n in "${sizes[@]}"; do
  /usr/bin/time -f "  process: %e s, peak %M KiB" target/profiling/examples/synthetic "$n"
done
