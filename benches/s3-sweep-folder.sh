#!/usr/bin/env bash
# A real sweep at the speed of the network: a generated layout with DANGLING blobs nothing
# references (100k by default) served by examples/s3-folder.rs (in memory, writable, DELAY_MS
# before each answer), swept by `gc -m --grace 0 --no-cache`. The server is started afresh for
# each of RUNS runs (the sweep consumes its bucket). Prints per run the wall time, the
# requests by kind, the keys deleted and the objects left, then the floor: deleted keys / 1,000
# a DeleteObjects x DELAY_MS / 256 in flight.
#
#   benches/s3-sweep-folder.sh [DANGLING] [DELAY_MS] [RUNS]        (100000, 20, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
dangling=${1:-100000}
delay=${2:-20}
runs=${3:-3}
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout --example s3-folder
BIN=$PWD/target/profiling/regsweep
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/sweep-folder-$dangling
if [ ! -d "$WORK/bucket/regroot" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK/bucket"
  target/profiling/examples/gen-layout --out "$WORK/bucket/regroot" --repos 20 --tags 80 \
    --untagged 10 --dangling "$dangling" --layer-size 16 >/dev/null
fi
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
echo "## $(find "$WORK/bucket" -path '*/data' | wc -l) blobs, $(find "$WORK/bucket" -type f | wc -l) objects, $delay ms a request"
for run in $(seq "$runs"); do
  start_s3_folder "$WORK/bucket" "$delay" "$WORK"
  # The same reads without the deletes first: the sweep's own cost is the difference.
  start=$(date +%s.%N)
  "$BIN" gc --root s3://bench/regroot --endpoint "$S3" -m --grace 0 --no-cache --dry-run --format json -q --report "$WORK/dry.json"
  end=$(date +%s.%N)
  echo "run $run dry run: $(echo "$end - $start" | bc) s $(curl -fsS "$S3/__stats")"
  curl -fsS -X POST "$S3/__reset" >/dev/null
  start=$(date +%s.%N)
  "$BIN" gc --root s3://bench/regroot --endpoint "$S3" -m --grace 0 --no-cache --format json -q --report "$WORK/sweep.json" 2>/dev/null
  end=$(date +%s.%N)
  echo "run $run sweep:   $(echo "$end - $start" | bc) s $(curl -fsS "$S3/__stats") blobs_deleted $(python3 -c "import json; print(json.load(open('$WORK/sweep.json'))['summary']['blobs_deleted'])")"
  kill $server; wait $server 2>/dev/null || true
done
echo "floor of the deletes alone: keys / 1000 x $delay ms / 256 in flight (see BENCHMARKS.md)"
