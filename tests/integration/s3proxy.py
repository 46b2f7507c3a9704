#!/usr/bin/env python3
"""A counting (and, when asked, failing) HTTP proxy in front of an S3 server, for the tests and
the benchmarks: it counts every request by kind, so that the reference GC's cost can be measured
the way regsweep reports its own, and it can answer the first N requests with 503 SlowDown, the
throttling reply S3 gives, to test retries.

    s3proxy.py PORT UPSTREAM_URL COUNTS_FILE [FAIL_FIRST_N [STATUS]]

STATUS is what the failed requests get: 503 (SlowDown, the default) or 403 (AccessDenied).
With S3PROXY_DELAY_MS set, every request waits that long first (a round trip to a far bucket;
benches/s3-sweep-latency.sh). With S3PROXY_KEY_ERRORS=N, the first N DeleteObjects requests
lose their first key: it is not forwarded, and the answer names it in a per-key <Error>
(InternalError), as S3 does for a key it could not delete (object_store itself resends such a
request up to five times). With S3PROXY_RESET_EVERY=N, every
Nth request is answered by resetting its connection (RST, no reply): a flaky network, or a
server that drops what it cannot take. With S3PROXY_STALL_AFTER=N, every request after the
Nth is read and never answered, its connection held open: an endpoint that stops answering.
With S3PROXY_LAND_THEN_STALL=PART, the first DeleteObjects whose body names a key containing
PART is passed on (its keys go) and then neither it nor any later request is answered: a delete
that lands while its answer, and the network, are lost.
With S3PROXY_DELETE_ANSWER=foreign, every DeleteObjects answer also names, in an <Error>, a key
the request did not ask for; with =silent, every DeleteObjects loses its first key (not
forwarded) and the answer says nothing of it: a store whose answers cannot be trusted.

COUNTS_FILE is rewritten (whole, by rename) after every request: {"list": n, "get": n, ...}.
Standard library only.
"""

import base64
import hashlib
import http.server
import json
import re
import os
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request

PORT, UPSTREAM, COUNTS = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]
FAIL_FIRST = int(sys.argv[4]) if len(sys.argv) > 4 else 0
STATUS = int(sys.argv[5]) if len(sys.argv) > 5 else 503
DELAY = int(os.environ.get("S3PROXY_DELAY_MS", "0")) / 1000
KEY_ERRORS = [int(os.environ.get("S3PROXY_KEY_ERRORS", "0"))]
RESET_EVERY = int(os.environ.get("S3PROXY_RESET_EVERY", "0"))
STALL_AFTER = int(os.environ.get("S3PROXY_STALL_AFTER", "0"))
LAND_THEN_STALL = os.environ.get("S3PROXY_LAND_THEN_STALL", "").encode()
DELETE_ANSWER = os.environ.get("S3PROXY_DELETE_ANSWER", "")
landed = [False]
counts = {k: 0 for k in ("list", "get", "head", "put", "copy", "delete", "failed", "reset", "stalled")}
seen = [0]
lock = threading.Lock()

FAILURE = {
    503: b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>",
    403: b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>",
}[STATUS]


def kind(method, path, headers):
    query = path.split("?", 1)[1] if "?" in path else ""
    key = path.split("?", 1)[0].strip("/")
    if method == "GET" and ("list-type=" in query or "delimiter=" in query or "/" not in key):
        return "list"
    if method == "GET":
        return "get"
    if method == "HEAD":
        return "head"
    if method == "DELETE" or (method == "POST" and "delete" in query):
        return "delete"
    if method == "PUT" and "x-amz-copy-source" in {k.lower() for k in headers.keys()}:
        return "copy"
    return "put"


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go in two writes: without this each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def handle_any(self):
        if DELAY:
            time.sleep(DELAY)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        with lock:
            seen[0] += 1
            fail = seen[0] <= FAIL_FIRST
            reset = not fail and RESET_EVERY > 0 and seen[0] % RESET_EVERY == 0
            stall = (STALL_AFTER > 0 and seen[0] > STALL_AFTER) or landed[0]
            land = (LAND_THEN_STALL and not stall and self.command == "POST"
                    and "delete" in self.path and body and LAND_THEN_STALL in body)
            landed[0] = landed[0] or bool(land)
            what = "stalled" if stall else "failed" if fail else "reset" if reset else kind(self.command, self.path, self.headers)
            counts[what] += 1
            tmp = COUNTS + ".tmp"
            with open(tmp, "w") as f:
                json.dump(counts, f)
            os.replace(tmp, COUNTS)
        if land:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            req = urllib.request.Request(UPSTREAM + self.path, data=body, method="POST", headers=headers)
            urllib.request.urlopen(req).read()
            stall = True
        if stall:
            # Held until the client gives up; the thread is a daemon and ends with the server.
            while True:
                time.sleep(3600)
        if reset:
            # Linger 0: the close sends RST, as a dropped connection does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fail:
            self.send_response(STATUS)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(FAILURE)))
            self.end_headers()
            self.wfile.write(FAILURE)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        failed_key = None
        if self.command == "POST" and "delete" in self.path and body:
            with lock:
                take = KEY_ERRORS[0] > 0 or DELETE_ANSWER == "silent"
                KEY_ERRORS[0] -= int(KEY_ERRORS[0] > 0)
            m = re.search(rb"<Object><Key>(.*?)</Key>.*?</Object>", body) if take else None
            if m:
                failed_key = m.group(1)
                body = body[: m.start()] + body[m.end() :]
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-md5", "content-length")}
                headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        error = b""
        if failed_key is not None and DELETE_ANSWER != "silent":
            error = (b"<Error><Key>" + failed_key + b"</Key><Code>InternalError</Code>"
                     b"<Message>We encountered an internal error. Please try again.</Message></Error>")
        if failed_key is not None and b"<Object>" not in body:
            # The request's only key failed: S3 answers 200 with its <Error>; forwarding an
            # empty Delete would get MalformedXML instead.
            data = (b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult '
                    b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + error + b"</DeleteResult>")
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        req = urllib.request.Request(UPSTREAM + self.path, data=body, method=self.command, headers=headers)
        try:
            resp = urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            resp = e
        data = resp.read()
        if DELETE_ANSWER == "foreign" and self.command == "POST" and "delete" in self.path:
            # Not InternalError: object_store resends an answer holding that before reading it.
            error = (b"<Error><Key>not/asked/for</Key><Code>AccessDenied</Code>"
                     b"<Message>Access Denied</Message></Error>")
        if error:
            data = data.replace(b"</DeleteResult>", error + b"</DeleteResult>")
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(k, v)
        # A HEAD answer says the object's length, with no body.
        length = resp.headers.get("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


# Many connections at once (a client with hundreds of requests in flight): the default backlog
# of 5 would refuse them.
http.server.ThreadingHTTPServer.request_queue_size = 1024
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Proxy).serve_forever()
