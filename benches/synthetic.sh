#!/usr/bin/env bash
# The scan-mark-plan core at sizes no disk here holds (examples/synthetic/): SIZES blobs either
# computed on demand by a backend that holds nothing (`generated`, the default: names, links
# and manifests made from each blob's number, so 100M fits) or put through the memory backend
# of the storage seam (`memory`). Then what `gc --dry-run -m --grace 0` runs, held in memory and
# then in the bounded mode (`--memory-limit`: the blob list and layer links spilled to $TMPDIR,
# else /var/tmp). One line of JSON per run: the peak the run adds above the backend's own memory
# (VmHWM, mapped spill pages included), the anonymous memory's sampled peak (RssAnon), per blob,
# the time per blob, and the plan's checksum, which must be the same in both modes;
# /usr/bin/time adds the whole process. First, at a small size, the generated layout is copied
# into the memory backend and both plans must agree digest for digest, and the bounded mode
# must plan the same as the held one.
#
#   benches/synthetic.sh [generated|memory] [SIZES...]   (1000000 10000000 100000000 by default)
#   MODES="bounded" benches/synthetic.sh 100000000        (only the bounded runs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile profiling -q --example synthetic
mode=generated
case "${1:-}" in generated|memory) mode=$1; shift ;; esac
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000 100000000)
read -r -a modes <<< "${MODES:-held bounded}"
target/profiling/examples/synthetic compare 100000
target/profiling/examples/synthetic bounded 100000
for n in "${sizes[@]}"; do
  for m in "${modes[@]}"; do
    limit=""
    # A limit far above the run's needs: the bounded mode's lists spill, nothing is refused.
    [ "$m" = bounded ] && limit=$((1 << 50))
    SYNTHETIC_MEMORY_LIMIT=$limit /usr/bin/time -f "  process: %e s, peak %M KiB" \
      target/profiling/examples/synthetic "$mode" "$n"
  done
done
