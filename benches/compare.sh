#!/usr/bin/env bash
# Times regsweep against the reference GC and find(1) on generated layouts, at three scales.
#
#   benches/compare.sh [10k] [130k] [1m]     (default: all three)
#
# For each scale: generate the layout once (examples/gen-layout.rs), warm the cache, then run
# `regsweep gc --dry-run`, `docker-registry garbage-collect --dry-run`, `find ROOT -type f` and
# `regsweep du` alternately RUNS times (default 5; 3 at 1m), each under /usr/bin/time for elapsed
# time and peak memory. Then `regsweep check --verify-digests` against `cat`-ing every blob, on
# a layout of real content (the scale layouts' layers are sparse files of zeros), with the cache
# warm and (as root) cold.
# It checks that regsweep (--grace 0) and the reference pick the same blobs, and measures the
# real sweep rate on a layout of dangling blobs. Medians and ratios go to stdout as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh
[ -x /usr/bin/time ] || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -q time; }
cargo build --profile profiling -q
cargo build --profile profiling -q --example gen-layout
BIN=$PWD/target/profiling/regsweep
GEN=$PWD/target/profiling/examples/gen-layout
WORK=${BENCH_DIR:-/var/tmp/regsweep-bench}
mkdir -p "$WORK"
scales=("$@")
[ ${#scales[@]} -gt 0 ] || scales=(10k 130k 1m)

params() {
  case "$1" in
    10k) echo "--repos 20 --tags 80 --untagged 10 --dangling 500" ;;
    130k) echo "--repos 100 --tags 210 --untagged 20 --dangling 5000" ;;
    1m) echo "--repos 500 --tags 330 --untagged 30 --dangling 40000" ;;
    *) echo "unknown scale $1" >&2; exit 2 ;;
  esac
}

# measure NAME CMD...: appends "NAME elapsed_s maxrss_kb" to $RESULTS. Exit 3 is regsweep's
# "damage found": check --verify-digests says so of the generated layers, by design.
measure() {
  local name=$1; shift
  local rc=0
  /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" > /dev/null 2> "$WORK/cmd.err" || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
    echo "$name failed ($rc):" >&2; cat "$WORK/cmd.err" >&2; exit 1
  fi
  echo "$name $(tail -n 1 "$WORK/time.out")" >> "$RESULTS"
}

summary() {
  python3 - "$RESULTS" "$1" "$2" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, t, m = line.split()
    rows[name].append((float(t), int(m)))
scale, blobs = sys.argv[2], int(sys.argv[3])
med = {k: (statistics.median(t for t, _ in v), max(m for _, m in v), len(v)) for k, v in rows.items()}
print(f"\n### {scale}: {blobs} blobs\n")
print("| command | runs | median s | peak RSS | RSS per blob |")
print("| --- | --- | --- | --- | --- |")
for k, (t, m, n) in med.items():
    print(f"| {k} | {n} | {t:.3f} | {m/1024:.1f} MiB | {m*1024/blobs:.0f} B |")
def ratio(a, b):
    if a in med and b in med and med[a][0] > 0:
        print(f"- {b} / {a}: {med[b][0]/med[a][0]:.2f}x time, {med[b][1]/med[a][1]:.2f}x memory")
ratio("regsweep-gc-dry-run", "reference-gc-dry-run")
ratio("regsweep-gc-dry-run", "find-type-f")
ratio("regsweep-gc-dry-run", "regsweep-du")
ratio("cat-every-blob", "regsweep-check-verify")
PY
}

for scale in "${scales[@]}"; do
  root="$WORK/layout-$scale"
  if [ ! -f "$root.done" ]; then
    rm -rf "$root"
    # shellcheck disable=SC2046
    "$GEN" --out "$root" $(params "$scale") >&2
    touch "$root.done"
  fi
  cfg="$WORK/config-$scale.yml"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n' "$root" > "$cfg"
  blobs=$(find "$root/docker/registry/v2/blobs" -name data | wc -l)
  runs=${RUNS:-5}; [ "$scale" = 1m ] && runs=${RUNS:-3}

  # Same choice as the reference GC (plain mode, no grace)?
  "$BIN" gc --dry-run --grace 0 --quiet --root "$root" --format json --report "$WORK/rs.json"
  docker-registry garbage-collect --dry-run "$cfg" > "$WORK/ref.out" 2>/dev/null
  python3 - "$WORK/rs.json" "$WORK/ref.out" <<'PY'
import json, sys
ours = {b["digest"] for b in json.load(open(sys.argv[1]))["blobs_deleted"]}
ref = {l.split(": ")[1].strip() for l in open(sys.argv[2]) if l.startswith("blob eligible")}
assert ours == ref, f"regsweep {len(ours)} vs reference {len(ref)}"
print(f"same blobs as the reference GC: {len(ours)}", file=sys.stderr)
PY

  RESULTS="$WORK/results-$scale.txt"; : > "$RESULTS"
  find "$root" -type f > /dev/null  # warm the cache
  for _ in $(seq "$runs"); do
    measure regsweep-gc-dry-run "$BIN" gc --dry-run --quiet --root "$root"
    measure reference-gc-dry-run docker-registry garbage-collect --dry-run "$cfg"
    measure find-type-f find "$root" -type f
    measure regsweep-du "$BIN" du --quiet --root "$root"
  done
  summary "$scale" "$blobs"
done

# Digest verification against cat(1), on layers of real content (the scales above are sparse).
verify="$WORK/layout-verify"
if [ ! -f "$verify.done" ]; then
  rm -rf "$verify"
  "$GEN" --out "$verify" --repos 8 --tags 20 --layers 3 --bases 4 --untagged 0 --dangling 0 --uploads 0 --layer-size 4000000 --real >&2
  touch "$verify.done"
fi
RESULTS="$WORK/results-verify.txt"; : > "$RESULTS"
vblobs=$(find "$verify/docker/registry/v2/blobs" -name data | wc -l)
du -sb "$verify/docker/registry/v2/blobs" >&2
find "$verify" -type f -exec cat {} + > /dev/null  # warm the cache
for _ in $(seq "${RUNS:-5}"); do
  measure regsweep-check-verify "$BIN" check --verify-digests --quiet --root "$verify"
  measure cat-every-blob sh -c "find '$verify/docker/registry/v2/blobs' -name data -print0 | xargs -0 cat"
done
summary verify "$vblobs"

# The same from a cold cache, as a nightly verification reads: root can drop the page cache.
if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
  RESULTS="$WORK/results-verify-cold.txt"; : > "$RESULTS"
  for _ in $(seq "${RUNS:-5}"); do
    sync; echo 3 > /proc/sys/vm/drop_caches
    measure regsweep-check-verify "$BIN" check --verify-digests --quiet --root "$verify"
    sync; echo 3 > /proc/sys/vm/drop_caches
    measure cat-every-blob sh -c "find '$verify/docker/registry/v2/blobs' -name data -print0 | xargs -0 cat"
  done
  summary "verify, cold cache" "$vblobs"
fi

# The real sweep: a layout of dangling blobs, deleted for real.
sweep="$WORK/sweep"
rm -rf "$sweep"
"$GEN" --out "$sweep" --repos 1 --tags 1 --untagged 0 --dangling 100000 --layer-size 1000 >&2
RESULTS="$WORK/results-sweep.txt"; : > "$RESULTS"
sync  # the generator's writes are not the sweep's to pay for
measure regsweep-gc-sweep "$BIN" gc --grace 0 --quiet --root "$sweep"
python3 - "$RESULTS" <<'PY'
import sys
name, t, m = open(sys.argv[1]).read().split()
print(f"\n### sweep\n\n- 100000 dangling blobs deleted in {float(t):.2f} s: {100000/float(t):.0f} blobs/s, peak RSS {int(m)/1024:.1f} MiB")
PY
rm -rf "$sweep"
