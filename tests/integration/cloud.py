#!/usr/bin/env python3
"""A client for the two emulators the tests run (Azurite, fake-gcs-server): it puts a layout the
real registry wrote on disk into a container or bucket key for key, as the v3 registry's
`azure` and `gcs` drivers store it (`<rootdirectory>/docker/registry/v2/...`), lists keys, and
copies a prefix back to disk, so that the real registry can serve what a sweep left.

    cloud.py azure ENDPOINT CONTAINER mkbucket
    cloud.py azure ENDPOINT CONTAINER upload DIR PREFIX
    cloud.py azure ENDPOINT CONTAINER download PREFIX DIR
    cloud.py azure ENDPOINT CONTAINER list PREFIX
    cloud.py azure ENDPOINT CONTAINER put KEY FILE
    cloud.py gcs   ENDPOINT BUCKET    (the same commands)

ENDPOINT for azure is the account URL (http://127.0.0.1:PORT/devstoreaccount1), signed with
Azurite's well-known devstoreaccount1 key (Shared Key); for gcs the server's URL (it checks no
credentials). Standard library only.
"""

import base64
import concurrent.futures
import datetime
import hashlib
import hmac
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

ACCOUNT = "devstoreaccount1"
KEY = base64.b64decode(
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
VERSION = "2021-08-06"


def azure(method, url, body=b"", headers=None):
    """One Shared Key signed request to Azurite; the response body."""
    headers = dict(headers or {})
    if method == "PUT":
        # urllib would add a form content type to a PUT: sign the one sent.
        headers.setdefault("Content-Type", "application/octet-stream")
    headers["x-ms-date"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%a, %d %b %Y %H:%M:%S GMT"
    )
    headers["x-ms-version"] = VERSION
    parts = urllib.parse.urlsplit(url)
    length = str(len(body)) if body else ""
    canon_headers = "".join(
        f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-")
    )
    # Path-style (the emulator): the account is named again in the path.
    resource = f"/{ACCOUNT}{urllib.parse.unquote(parts.path)}"
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    for k in sorted(query):
        resource += f"\n{k.lower()}:{','.join(sorted(query[k]))}"
    content_type = headers.get("Content-Type", "")
    to_sign = "\n".join(
        [method, "", "", length, "", content_type, "", "", "", "", "", ""]
    ) + "\n" + canon_headers + resource
    sig = base64.b64encode(hmac.new(KEY, to_sign.encode(), hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{sig}"
    req = urllib.request.Request(url, data=body if body else None, method=method, headers=headers)
    if method == "PUT" and not body:
        req.data = b""
    with urllib.request.urlopen(req) as r:
        return r.read()


def gcs(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as r:
        return r.read()


class Azure:
    def __init__(self, endpoint, container):
        self.base = f"{endpoint.rstrip('/')}/{container}"

    def mkbucket(self):
        azure("PUT", f"{self.base}?restype=container")

    def put(self, key, data):
        url = f"{self.base}/{urllib.parse.quote(key)}"
        azure("PUT", url, data, {"x-ms-blob-type": "BlockBlob"})

    def get(self, key):
        return azure("GET", f"{self.base}/{urllib.parse.quote(key)}")

    def keys(self, prefix):
        out, marker = [], ""
        while True:
            q = {"restype": "container", "comp": "list", "prefix": prefix}
            if marker:
                q["marker"] = marker
            doc = ET.fromstring(azure("GET", f"{self.base}?{urllib.parse.urlencode(q)}"))
            out += [b.findtext("Name") for b in doc.iter("Blob")]
            marker = doc.findtext("NextMarker") or ""
            if not marker:
                return out


class Gcs:
    def __init__(self, endpoint, bucket):
        self.endpoint, self.bucket = endpoint.rstrip("/"), bucket

    def mkbucket(self):
        body = json.dumps({"name": self.bucket}).encode()
        gcs("POST", f"{self.endpoint}/storage/v1/b?project=test", body,
            {"Content-Type": "application/json"})

    def put(self, key, data):
        q = urllib.parse.urlencode({"uploadType": "media", "name": key})
        gcs("POST", f"{self.endpoint}/upload/storage/v1/b/{self.bucket}/o?{q}", data,
            {"Content-Type": "application/octet-stream"})

    def get(self, key):
        q = urllib.parse.quote(key, safe="")
        return gcs("GET", f"{self.endpoint}/storage/v1/b/{self.bucket}/o/{q}?alt=media")

    def keys(self, prefix):
        out, token = [], ""
        while True:
            q = {"prefix": prefix}
            if token:
                q["pageToken"] = token
            doc = json.loads(gcs("GET", f"{self.endpoint}/storage/v1/b/{self.bucket}/o?"
                                 + urllib.parse.urlencode(q)))
            out += [i["name"] for i in doc.get("items", [])]
            token = doc.get("nextPageToken", "")
            if not token:
                return out


def main():
    service, endpoint, bucket, command, *args = sys.argv[1:]
    store = Azure(endpoint, bucket) if service == "azure" else Gcs(endpoint, bucket)
    if command == "mkbucket":
        store.mkbucket()
    elif command == "put":
        with open(args[1], "rb") as f:
            store.put(args[0], f.read())
    elif command == "upload":
        top, prefix = args[0], args[1].strip("/")
        paths = [os.path.join(d, n) for d, _, names in os.walk(top, followlinks=True) for n in names]

        def put(path):
            rel = os.path.relpath(path, top)
            with open(path, "rb") as f:
                store.put(f"{prefix}/{rel}" if prefix else rel, f.read())

        # Many in flight, as the registry's own writers are; any failure fails the upload.
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(put, paths))
    elif command == "download":
        prefix, top = args[0], args[1]
        for key in store.keys(prefix):
            path = os.path.join(top, key[len(prefix):].lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(store.get(key))
    elif command == "list":
        for key in store.keys(args[0]):
            print(key)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    try:
        main()
    except urllib.error.HTTPError as e:
        sys.exit(f"{e.code} {e.reason}: {e.read()[:500]!r}")
