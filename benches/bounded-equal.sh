#!/usr/bin/env bash
# The bounded mode plans what the default mode plans, on the 134k layout (issue #31): the
# layout generated once (examples/gen-layout.rs, `--repos 500 --tags 40 --layer-size 16`: 138k
# blobs), then `gc --dry-run --grace 0 -m --no-cache --format json` held and with
# `--memory-limit` at the least it accepts; the two plans' checksums and item lists must be the
# same, and a `du` and a `check` must say the same. Peak RSS and time of each, from
# /usr/bin/time.
#
#   benches/bounded-equal.sh        (layout in $BENCH_DIR, /var/tmp/regsweep-bench by default)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout
BIN=$PWD/target/profiling/regsweep
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}
root=$WORK/bounded-134k
if [ ! -d "$root/docker" ]; then
  mkdir -p "$root"
  target/profiling/examples/gen-layout --out "$root" --repos 500 --tags 40 --layer-size 16 >/dev/null
fi
find "$root" -type f > /dev/null
dry=(gc --root "$root" --dry-run --grace 0 -m --no-cache --format json --quiet --report -)
# The least limit this layout accepts, from the refusal of a limit far below it.
least=$("$BIN" "${dry[@]}" --memory-limit 1MiB 2>&1 >/dev/null | sed -n 's/.*give --memory-limit \([0-9]*MiB\).*/\1/p' || true)
[ -n "$least" ] || { echo "no minimum named" >&2; exit 1; }
items='{checksum, blobs_deleted, manifests_deleted, layer_links_deleted, tags_deleted, summary}'
for mode in held bounded; do
  extra=()
  [ "$mode" = bounded ] && extra=(--memory-limit "$least")
  /usr/bin/time -f "  $mode: %e s, peak %M KiB" "$BIN" "${dry[@]}" "${extra[@]}" > "$WORK/plan-$mode.json"
  jq -S "$items" "$WORK/plan-$mode.json" > "$WORK/items-$mode.json"
  for cmd in du check; do
    "$BIN" $cmd --root "$root" --format json ${extra[@]+"${extra[@]}"} $([ $cmd = du ] && echo --no-cache) \
      | jq -S 'del(.started_at, .finished_at)' > "$WORK/$cmd-$mode.json" || [ $? -eq 3 ]
  done
done
cmp "$WORK/items-held.json" "$WORK/items-bounded.json"
cmp "$WORK/du-held.json" "$WORK/du-bounded.json"
cmp "$WORK/check-held.json" "$WORK/check-bounded.json"
echo "the same plan, du and check held and bounded (--memory-limit $least): $(jq -r .checksum "$WORK/plan-held.json"), $(jq '.blobs_deleted | length' "$WORK/plan-held.json") blobs of $(jq .summary.blobs "$WORK/plan-held.json")"
