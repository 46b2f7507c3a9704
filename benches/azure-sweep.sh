#!/usr/bin/env bash
# A real sweep on Azurite (the azure driver's store): the 10k layout with DANGLING blobs
# nothing references (20,000 by default) put in key for key, then a dry run and the real
# `gc -m --grace 0 --no-cache`, RUNS times (the bucket is loaded afresh for each, since the
# sweep consumes it). Prints per run the wall times, the requests by kind, the blobs and keys
# deleted, and the floor of the delete requests: per folder swept, its keys / 256 a batch.
# Azurite serialises its work in one Node process, so its seconds say little of a real store;
# the request counts carry over.
#
#   benches/azure-sweep.sh [DANGLING] [RUNS]        (20000, 1)
#   CONCURRENCY=8 benches/azure-sweep.sh ...        (--s3-concurrency; default the gate's 256)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
dangling=${1:-20000}
runs=${2:-1}
extra=()
[ -n "${CONCURRENCY:-}" ] && extra=(--s3-concurrency "$CONCURRENCY")
scripts/install-peers.sh
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout
BIN=$PWD/target/profiling/regsweep
CLIENT=$PWD/tests/integration/cloud.py
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/azure-sweep-$dangling
if [ ! -d "$WORK/layout" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK"
  target/profiling/examples/gen-layout --out "$WORK/layout" --repos 20 --tags 80 --untagged 10 \
    --dangling "$dangling" --layer-size 16 >/dev/null
fi
export AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1
export AZURE_STORAGE_ACCOUNT_KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
keys=$(find "$WORK/layout" -type f | wc -l)
echo "## $(find "$WORK/layout" -path '*/data' | wc -l) blobs, $keys keys, on Azurite, ${CONCURRENCY:-256} in flight"
for run in $(seq "$runs"); do
  rm -rf "$WORK/azurite"
  port=$(free_port)
  azurite-blob --blobHost 127.0.0.1 --blobPort "$port" --location "$WORK/azurite" --silent \
    --disableTelemetry --skipApiVersionCheck >/dev/null 2>&1 &
  azurite=$!
  trap 'kill $azurite 2>/dev/null || true' EXIT
  wait_port "$port"
  AZ=http://127.0.0.1:$port/devstoreaccount1
  python3 "$CLIENT" azure "$AZ" registry mkbucket
  python3 "$CLIENT" azure "$AZ" registry upload "$WORK/layout" regroot
  for mode in dry sweep; do
    flag=--dry-run
    [ "$mode" = sweep ] && flag=
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$BIN" gc --root az://registry/regroot --endpoint "$AZ" -m --grace 0 --no-cache $flag \
      "${extra[@]}" --format json -v --report "$WORK/$mode.json" 2>"$WORK/$mode.log"
    end=$(date +%s.%N)
    echo "run $run $mode: $(echo "$end - $start" | bc) s; $(grep -c 'fewer requests in flight' "$WORK/$mode.log" || true) cuts of the bound"
  done
  left=$(python3 "$CLIENT" azure "$AZ" registry list regroot/ | wc -l)
  python3 - "$WORK/sweep.json" "$keys" "$left" <<'EOF'
import collections, json, math, sys
r = json.load(open(sys.argv[1]))
keys, left = int(sys.argv[2]), int(sys.argv[3])
s = r["summary"]
# The keys each folder loses: a blob folder (data), a link folder (link), an upload's files
# are listed afresh by the sweep; the floor counts a batch per 256 keys of each folder group
# the sweep deletes together (the blob prefixes, each repository's link folders).
groups = collections.Counter()
for b in r["blobs_deleted"]:
    groups["blobs/" + b["digest"].split(":")[1][:2]] += 1
for l in r["layer_links_deleted"]:
    groups["layers/" + l["repository"]] += 1
for m in r["manifests_deleted"]:
    groups["revisions/" + m["repository"]] += 1
floor = sum(math.ceil(n / 256) for n in groups.values())
print(f"  requests {s['requests']}")
print(f"  blobs deleted {s['blobs_deleted']}, manifests {s['manifests_deleted']}, layer links {s['layer_links_deleted']}; keys {keys} -> {left} ({keys - left} gone)")
print(f"  delete requests {s['requests']['delete']} against a floor of {floor} (a batch per 256 keys of each folder group)")
EOF
  kill $azurite; wait $azurite 2>/dev/null || true
done
