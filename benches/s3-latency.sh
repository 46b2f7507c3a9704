#!/usr/bin/env bash
# regsweep on a bucket whose every request costs a round trip: a generated layout served by
# examples/s3-folder.rs (read-only, a task per request, DELAY_MS before each answer), cold dry
# run, then warm (manifest cache), and the reference GC's dry run at 10k. Prints wall time,
# requests by kind and the most requests in flight, as the server counted them.
#
#   benches/s3-latency.sh [10k|134k] [DELAY_MS]          (10k and 20 ms by default)
#   SKIP_REFERENCE=1 benches/s3-latency.sh 134k           (regsweep alone)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
scale=${1:-10k}
delay=${2:-20}
case "$scale" in
  10k) params="--repos 20 --tags 80 --untagged 10 --dangling 500 --layer-size 16" ;;
  134k) params="--repos 500 --tags 40 --layer-size 16" ;;
  *) echo "unknown scale $scale" >&2; exit 2 ;;
esac
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout --example s3-folder
BIN=$PWD/target/profiling/regsweep
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/latency-$scale
if [ ! -d "$WORK/bucket/regroot" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK/bucket"
  # shellcheck disable=SC2086
  target/profiling/examples/gen-layout --out "$WORK/bucket/regroot" $params >/dev/null
fi
start_s3_folder "$WORK/bucket" "$delay" "$WORK"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

# measure NAME CMD...: wall seconds and the server's counts for one command.
measure() {
  local name=$1; shift
  curl -fsS -X POST "$S3/__reset" >/dev/null
  local start end
  start=$(date +%s.%N)
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  end=$(date +%s.%N)
  echo "$name $(echo "$end - $start" | bc) s $(curl -fsS "$S3/__stats")"
}
dry() { "$BIN" gc --root s3://bench/regroot --endpoint "$S3" --dry-run --grace 0 --format json -q --report - "$@"; }
reference() {
  cat >"$WORK/registry.yml" <<YML
version: 0.1
log: {level: error}
storage:
  s3: {accesskey: testing, secretkey: testing, region: us-east-1, regionendpoint: "$S3", bucket: bench, rootdirectory: /regroot, secure: false}
http: {addr: 127.0.0.1:0}
YML
  env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$WORK/registry.yml"
}
echo "## $scale: $(find "$WORK/bucket" -path '*/data' | wc -l) blobs, $(find "$WORK/bucket" -type f | wc -l) objects, $delay ms a request"
rm -f "$WORK/manifests.bin"
measure cold dry --no-cache
measure cold-fill dry --cache "$WORK/manifests.bin"
measure warm dry --cache "$WORK/manifests.bin"
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  measure reference reference
fi
