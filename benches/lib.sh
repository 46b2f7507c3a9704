# Shared by the benchmark scripts: `source benches/lib.sh` from the repository's root.

# A free TCP port on the loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Returns once something listens on 127.0.0.1:$1 (at most 30 s).
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# start_s3_folder BUCKET_DIR DELAY_MS WORK: serves BUCKET_DIR as the bucket `bench` through
# examples/s3-folder.rs (built by the caller); sets S3 (its URL) and server (its pid), and
# returns once it answers.
start_s3_folder() {
  local port
  port=$(free_port)
  S3=http://127.0.0.1:$port
  target/profiling/examples/s3-folder "$port" bench "$1" "$2" 2>"$3/server.err" &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  until curl -fsS "$S3/__stats" >/dev/null 2>&1; do sleep 0.2; done
}

# load_moto DIR ENDPOINT: creates the bucket `bench` and puts every file below DIR in it as
# regroot/<path>, 16 uploads in flight (boto3 comes with moto[server]).
load_moto() {
  python3 - "$1" "$2" <<'PY'
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
PY
}
