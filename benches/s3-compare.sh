#!/usr/bin/env bash
# regsweep against the reference GC on S3: the same generated layout served as a bucket by a
# local S3 server, each dry run made through a counting proxy, so that both are measured the
# same way: requests by kind, and wall time.
#
#   benches/s3-compare.sh [10k|100k]          (10k by default)
#   SKIP_REFERENCE=1 benches/s3-compare.sh    (regsweep alone)
#   S3_SERVER=moto|folder benches/s3-compare.sh 10k
#
# The server: moto (a real S3 implementation, loaded with one PUT per object) at 10k by default;
# benches/s3folder.py (a read-only S3 endpoint over the generated folder, a sorted key index) at
# 100k, where moto would take half an hour to load and most of a day to serve the reference's
# walk (it scans the whole bucket for every listing). Request counts are the clients' own, so
# they carry over from one server to the other; `S3_SERVER=folder ... 10k` checks that they
# equal moto's. Wall times on either server say little about a real bucket, where each
# request is a round trip and costs money: compare the counts.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
scripts/install-peers.sh
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout
BIN=$PWD/target/profiling/regsweep
GEN=$PWD/target/profiling/examples/gen-layout
PROXY=$PWD/tests/integration/s3proxy.py
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/s3
scale=${1:-10k}
case "$scale" in
  10k) params="--repos 20 --tags 80 --untagged 10 --dangling 500" ;;
  100k) params="--repos 100 --tags 150 --untagged 15 --dangling 5000" ;;
  130k) params="--repos 100 --tags 210 --untagged 20 --dangling 5000" ;;
  *) echo "unknown scale $scale" >&2; exit 2 ;;
esac
rm -rf "$WORK" && mkdir -p "$WORK"
# shellcheck disable=SC2086
"$GEN" --out "$WORK/layout" $params --layer-size 16 >/dev/null


export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
server=${S3_SERVER:-$([ "$scale" = 10k ] && echo moto || echo folder)}
S3_PORT=$(free_port)
S3=http://127.0.0.1:$S3_PORT
if [ "$server" = folder ]; then
  # The bucket's keys are regroot/<path in the layout>.
  mkdir -p "$WORK/bucket" && mv "$WORK/layout" "$WORK/bucket/regroot" && ln -s bucket/regroot "$WORK/layout"
  python3 benches/s3folder.py "$S3_PORT" bench "$WORK/bucket" 2>"$WORK/server.err" &
  PIDS=($!)
  trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
  # It indexes (and hashes) every file before it listens.
  for _ in $(seq 1 3000); do grep -q serving "$WORK/server.err" 2>/dev/null && break; sleep 0.1; done
  wait_port "$S3_PORT"
else
  python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >/dev/null 2>&1 &
  PIDS=($!)
  trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
  wait_port "$S3_PORT"
  # Load: every file of the layout as a key under regroot/, 16 uploads in flight.
  load_moto "$WORK/layout" "$S3"
fi

# run NAME CMD...: through a fresh counting proxy; prints "NAME seconds counts-json".
run() {
  local name=$1; shift
  local port counts
  port=$(free_port); counts=$WORK/$name.counts.json
  python3 "$PROXY" "$port" "$S3" "$counts" &
  local ppid=$!
  wait_port "$port"
  local start end
  start=$(date +%s.%N)
  ENDPOINT=http://127.0.0.1:$port "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  end=$(date +%s.%N)
  kill "$ppid"; wait "$ppid" 2>/dev/null || true
  echo "$name $(echo "$end - $start" | bc) $(cat "$counts")"
}

# The manifest cache is named, so that the second run finds what the first wrote.
regsweep_dry() { "$BIN" gc --root s3://bench/regroot --endpoint "$ENDPOINT" --dry-run --grace 0 --format json -q --report - --cache "$WORK/manifests.bin"; }
reference_dry() {
  cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage:
  s3: {accesskey: testing, secretkey: testing, region: us-east-1, regionendpoint: "$ENDPOINT", bucket: bench, rootdirectory: /regroot, secure: false}
http: {addr: 127.0.0.1:0}
EOF
  env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$WORK/registry.yml"
}

objects=$(find "$WORK/layout/" -type f | wc -l)
blobs=$(find "$WORK/layout/" -path '*blobs/sha256/*/data' | wc -l)
echo "## S3 ($server), $scale: $blobs blobs, $objects objects"
rm -f "$WORK/manifests.bin"
run regsweep regsweep_dry
run regsweep-again regsweep_dry
# SKIP_REFERENCE=1 measures regsweep alone (the reference takes minutes on moto).
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  run reference reference_dry
  echo "reference picks: $(grep -c 'blob eligible for deletion' "$WORK/reference.out" || true) blobs"
fi
echo "regsweep picks: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["blobs_deleted"]))' "$WORK/regsweep.out") blobs"
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  python3 - "$WORK/reference.out" "$WORK/regsweep.out" <<'PY'
import json, re, sys
ref = set(re.findall(r"blob eligible for deletion: (sha256:[0-9a-f]{64})", open(sys.argv[1]).read()))
ours = {b["digest"] for b in json.load(open(sys.argv[2]))["blobs_deleted"]}
print("same blobs, digest by digest" if ref == ours else
      f"DIFFERENT: {len(ref - ours)} only the reference's, {len(ours - ref)} only regsweep's")
PY
fi
