#!/usr/bin/env bash
# The bounded mode under a hard memory limit: the synthetic core (examples/synthetic/, the
# generated layout of SIZE blobs) in a memory cgroup of LIMIT MiB, which counts the page cache
# too, as systemd's MemoryMax= does. A run that needs more than the limit in memory of its own
# is killed by the kernel (exit 137); one that fits finishes, however slowly its spilled lists
# page in. Needs root and a writable memory cgroup (v2 `memory.max` or v1 `limit_in_bytes`).
#
#   benches/bounded-cgroup.sh SIZE LIMIT_MIB [held|bounded]   (bounded by default)
set -euo pipefail
cd "$(dirname "$0")/.."
size=$1 limit_mib=$2 mode=${3:-bounded}
cargo build --profile profiling -q --example synthetic
self=$(sed -n 's/^0:://p' /proc/self/cgroup)
v1=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
if [ -f "/sys/fs/cgroup$self/cgroup.controllers" ] && [ -z "$v1" ]; then
  cg=/sys/fs/cgroup$self/regsweep-bench.$$; mkdir "$cg"
  echo $((limit_mib << 20)) > "$cg/memory.max"; echo 0 > "$cg/memory.swap.max" 2>/dev/null || true
else
  cg=/sys/fs/cgroup/memory$v1/regsweep-bench.$$; mkdir "$cg"
  echo $((limit_mib << 20)) > "$cg/memory.limit_in_bytes"
fi
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
limit=""
[ "$mode" = bounded ] && limit=$((limit_mib << 20))
rc=0
SYNTHETIC_MEMORY_LIMIT=$limit /usr/bin/time -f "  process: %e s, peak %M KiB" \
  sh -c "echo \$\$ > $cg/cgroup.procs; exec target/profiling/examples/synthetic generated $size" || rc=$?
echo "  $mode, $size blobs, cgroup limit $limit_mib MiB: exit $rc"
