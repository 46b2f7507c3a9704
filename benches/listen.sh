#!/bin/sh
# The pull ledger's listener under load: sustained events per second with none lost, and the
# listener's peak memory. Usage: benches/listen.sh [EVENTS] [CLIENTS]
set -eu
cd "$(dirname "$0")/.."
EVENTS=${1:-20000}
CLIENTS=${2:-8}
cargo build --profile profiling --quiet --example pulls-load
cargo build --profile profiling --quiet
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/profiling/regsweep pulls listen --addr 127.0.0.1:$port --ledger "$dir/ledger.db" 2>"$dir/listen.log" &
pid=$!
until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do :; done
./target/profiling/examples/pulls-load --addr 127.0.0.1:$port --events "$EVENTS" --clients "$CLIENTS"
echo "listener peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
kill -TERM $pid; wait $pid || true
echo "tags in the ledger: $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from refs where kind='tag'\").fetchone()[0])" "$dir/ledger.db")"
tail -1 "$dir/listen.log" || true
