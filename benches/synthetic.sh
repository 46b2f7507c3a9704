#!/usr/bin/env bash
# The scan-mark-plan core at sizes no disk here holds (examples/synthetic/): SIZES blobs either
# computed on demand by a backend that holds nothing (`generated`, the default: names, links
# and manifests made from each blob's number, so 100M fits) or put through the memory backend
# of the storage seam (`memory`). Then what `gc --dry-run -m --grace 0` runs. One line of JSON
# per size: the peak the run adds above the backend's own memory, per blob, and the time per
# blob; /usr/bin/time adds the whole process. First, at a small size, the generated layout is
# copied into the memory backend and both plans must agree digest for digest.
#
#   benches/synthetic.sh [generated|memory] [SIZES...]   (1000000 10000000 100000000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile profiling -q --example synthetic
mode=generated
case "${1:-}" in generated|memory) mode=$1; shift ;; esac
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000 100000000)
target/profiling/examples/synthetic compare 100000
for n in "${sizes[@]}"; do
  /usr/bin/time -f "  process: %e s, peak %M KiB" target/profiling/examples/synthetic "$mode" "$n"
done
