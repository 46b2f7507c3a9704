#!/usr/bin/env bash
# A real sweep on a bucket whose every request costs a round trip: the 10k layout loaded into
# moto, behind tests/integration/s3proxy.py with S3PROXY_DELAY_MS (20 by default), swept by
# `gc -m --grace 0` with BIN (this build by default; give another build's binary to compare).
# Prints wall time, requests by kind, and the blobs left.
#
#   benches/s3-sweep-latency.sh [DELAY_MS] [BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
delay=${1:-20}
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout
BIN=${2:-$PWD/target/profiling/regsweep}
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/sweep-latency
rm -rf "$WORK" && mkdir -p "$WORK"
target/profiling/examples/gen-layout --out "$WORK/layout" --repos 20 --tags 80 --untagged 10 --dangling 500 --layer-size 16 >/dev/null
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
port=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
pids=($!)
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
wait_port "$port"
load_moto "$WORK/layout" "http://127.0.0.1:$port"
pport=$(free_port)
S3PROXY_DELAY_MS=$delay python3 tests/integration/s3proxy.py "$pport" "http://127.0.0.1:$port" "$WORK/counts.json" &
pids+=($!)
wait_port "$pport"
start=$(date +%s.%N)
"$BIN" gc --root s3://bench/regroot --endpoint "http://127.0.0.1:$pport" -m --grace 0 --no-cache --format json -q --report "$WORK/sweep.json"
end=$(date +%s.%N)
left=$(python3 -c "import boto3; s3=boto3.client('s3', endpoint_url='http://127.0.0.1:$port', region_name='us-east-1'); p=s3.get_paginator('list_objects_v2'); print(sum(1 for pg in p.paginate(Bucket='bench', Prefix='regroot/docker/registry/v2/blobs/') for o in pg.get('Contents', []) if o['Key'].endswith('/data')))")
echo "sweep $(echo "$end - $start" | bc) s, requests $(cat "$WORK/counts.json"), blobs left $left, deleted $(python3 -c "import json; print(json.load(open('$WORK/sweep.json'))['summary']['blobs_deleted'])")"
