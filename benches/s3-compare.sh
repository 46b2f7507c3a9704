#!/usr/bin/env bash
# regsweep against the reference GC on S3: the same generated layout loaded into a bucket of a
# local S3 server (moto), each dry run made through a counting proxy, so that both are measured
# the same way: requests by kind, and wall time.
#
#   benches/s3-compare.sh [10k|130k]     (scales as in compare.sh; 10k by default)
#   SKIP_REFERENCE=1 benches/s3-compare.sh   (regsweep alone)
#
# moto serialises requests (about 150 a second here), so wall times on it say little; the
# request counts are what carries over to a real bucket, where each request costs money and a
# round trip. Loading the layout takes a few minutes (one PUT per object, tiny layers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh
cargo build --release -q
cargo build --release -q --example gen-layout
BIN=$PWD/target/release/regsweep
GEN=$PWD/target/release/examples/gen-layout
PROXY=$PWD/tests/integration/s3proxy.py
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/s3
scale=${1:-10k}
case "$scale" in
  10k) params="--repos 20 --tags 80 --untagged 10 --dangling 500" ;;
  130k) params="--repos 100 --tags 210 --untagged 20 --dangling 5000" ;;
  *) echo "unknown scale $scale" >&2; exit 2 ;;
esac
rm -rf "$WORK" && mkdir -p "$WORK"
# shellcheck disable=SC2086
"$GEN" --out "$WORK/layout" $params --layer-size 16 >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

MOTO_PORT=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
MOTO_PID=$!
PIDS=("$MOTO_PID")
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
wait_port "$MOTO_PORT"
MOTO=http://127.0.0.1:$MOTO_PORT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

# Load: every file of the layout as a key under regroot/, 16 uploads in flight.
python3 - "$WORK/layout" "$MOTO" <<'EOF'
import os, sys, boto3, concurrent.futures as cf
root, endpoint = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket="bench")
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
def put(p):
    with open(p, "rb") as f:
        s3.put_object(Bucket="bench", Key="regroot/" + os.path.relpath(p, root), Body=f.read())
with cf.ThreadPoolExecutor(16) as ex:
    list(ex.map(put, files))
print(f"loaded {len(files)} objects", file=sys.stderr)
EOF

# run NAME CMD...: through a fresh counting proxy; prints "NAME seconds counts-json".
run() {
  local name=$1; shift
  local port counts
  port=$(free_port); counts=$WORK/$name.counts.json
  python3 "$PROXY" "$port" "$MOTO" "$counts" &
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
regsweep_dry() { "$BIN" gc --root s3://bench/regroot --s3-endpoint "$ENDPOINT" --dry-run --grace 0 --format json -q --report - --cache "$WORK/manifests.bin"; }
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

objects=$(find "$WORK/layout" -type f | wc -l)
blobs=$(find "$WORK/layout" -path '*blobs/sha256/*/data' | wc -l)
echo "## S3, $scale: $blobs blobs, $objects objects"
rm -f "$WORK/manifests.bin"
run regsweep regsweep_dry
run regsweep-again regsweep_dry
# SKIP_REFERENCE=1 measures regsweep alone (the reference takes minutes on moto).
if [ "${SKIP_REFERENCE:-0}" != 1 ]; then
  run reference reference_dry
  echo "reference picks: $(grep -c 'blob eligible for deletion' "$WORK/reference.out" || true) blobs"
fi
echo "regsweep picks: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["blobs_deleted"]))' "$WORK/regsweep.out") blobs"
