#!/usr/bin/env python3
"""A read-only S3 endpoint serving a folder, for benchmarks at sizes moto cannot hold.

    s3folder.py PORT BUCKET ROOT

Serves every file below ROOT as the object of bucket BUCKET whose key is its path relative to
ROOT, with what a dry run needs: ListObjects (v1, with marker) and ListObjectsV2 (with
continuation token and start-after), both with prefix, delimiter and max-keys; GetObject (with
Range) and HeadObject. ETags are the MD5 of the content, as S3 gives for a plain PUT; times are
the files' mtimes in whole seconds. Anything else gets 501. Authentication is not checked.

Why: moto scans its whole bucket for every listing, so at 100k blobs (260k objects) loading it
takes half an hour and the reference's walk would take most of a day. This serves the same
layout from a sorted key index: a listing costs a binary search. The request counts, which are
what the benchmark compares, are the clients' own; benches/s3-compare.sh checks that they match
moto's at 10k.
"""
import bisect
import email.utils
import hashlib
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

PORT, BUCKET, ROOT = int(sys.argv[1]), sys.argv[2], sys.argv[3]

KEYS = []
META = {}
for d, _, files in os.walk(ROOT):
    for f in files:
        p = os.path.join(d, f)
        key = os.path.relpath(p, ROOT)
        with open(p, "rb") as fh:
            md5 = hashlib.md5(fh.read()).hexdigest()
        st = os.stat(p)
        KEYS.append(key)
        META[key] = (p, st.st_size, int(st.st_mtime), md5)
KEYS.sort()


def iso(t):
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )


def listing(prefix, delimiter, after, max_keys):
    """Keys and common prefixes after `after`, at most max_keys of them together."""
    contents, prefixes, last = [], [], None
    i = bisect.bisect_right(KEYS, after) if after else bisect.bisect_left(KEYS, prefix)
    i = max(i, bisect.bisect_left(KEYS, prefix))
    truncated = False
    while i < len(KEYS):
        key = KEYS[i]
        if not key.startswith(prefix):
            break
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        if delimiter:
            j = key.find(delimiter, len(prefix))
            if j >= 0:
                cp = key[: j + len(delimiter)]
                prefixes.append(cp)
                last = cp
                # Past every key below this common prefix.
                i = bisect.bisect_left(KEYS, cp[:-1] + chr(ord(cp[-1]) + 1))
                continue
        contents.append(key)
        last = key
        i += 1
    return contents, prefixes, truncated, last


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go in two writes: without this each response waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self, what="NoSuchKey"):
        body = f"<Error><Code>{what}</Code><Message>not found</Message></Error>".encode()
        self.send(404, body, [("Content-Type", "application/xml")])

    def parse(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        return parts[0], key, q

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        bucket, key, q = self.parse()
        if bucket != BUCKET:
            return self.not_found("NoSuchBucket")
        if not key:
            return self.list(q)
        meta = META.get(key)
        if meta is None:
            return self.not_found()
        path, size, mtime, md5 = meta
        headers = [
            ("ETag", f'"{md5}"'),
            ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
            ("Content-Type", "application/octet-stream"),
            ("Accept-Ranges", "bytes"),
        ]
        with open(path, "rb") as fh:
            data = fh.read()
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and self.command == "GET":
            start, _, end = rng[6:].partition("-")
            start = int(start or 0)
            end = int(end) if end else size - 1
            if start >= size:
                return self.send(416, b"", headers)
            end = min(end, size - 1)
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
            return self.send(206, data[start : end + 1], headers)
        if self.command == "HEAD":
            self.send_response(200)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return
        self.send(200, data, headers)

    def list(self, q):
        v2 = q.get("list-type") == "2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        max_keys = min(int(q.get("max-keys", "1000") or 1000), 1000)
        if v2:
            after = q.get("continuation-token") or q.get("start-after") or ""
        else:
            after = q.get("marker", "")
        contents, prefixes, truncated, last = listing(prefix, delimiter, after, max_keys)
        enc = q.get("encoding-type") == "url"

        def k(s):
            return urllib.parse.quote(s, safe="/") if enc else escape(s)

        out = ['<?xml version="1.0" encoding="UTF-8"?>']
        out.append('<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">')
        out.append(f"<Name>{BUCKET}</Name><Prefix>{k(prefix)}</Prefix>")
        out.append(f"<MaxKeys>{max_keys}</MaxKeys>")
        if delimiter:
            out.append(f"<Delimiter>{k(delimiter)}</Delimiter>")
        if enc:
            out.append("<EncodingType>url</EncodingType>")
        out.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if v2:
            out.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
            if truncated:
                out.append(f"<NextContinuationToken>{escape(last)}</NextContinuationToken>")
        else:
            out.append(f"<Marker>{k(after)}</Marker>")
            if truncated and delimiter:
                out.append(f"<NextMarker>{k(last)}</NextMarker>")
        for key in contents:
            _, size, mtime, md5 = META[key]
            out.append(
                f"<Contents><Key>{k(key)}</Key><LastModified>{iso(mtime)}</LastModified>"
                f"<ETag>&quot;{md5}&quot;</ETag><Size>{size}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        for cp in prefixes:
            out.append(f"<CommonPrefixes><Prefix>{k(cp)}</Prefix></CommonPrefixes>")
        out.append("</ListBucketResult>")
        self.send(200, "".join(out).encode(), [("Content-Type", "application/xml")])

    def refuse(self):
        self.send(501, b"<Error><Code>NotImplemented</Code></Error>")

    do_PUT = do_POST = do_DELETE = refuse


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"serving {len(KEYS)} objects", file=sys.stderr, flush=True)
server.serve_forever()
