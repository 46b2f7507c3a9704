#!/usr/bin/env bash
# Installs what the tests run against, where missing: the reference registry
# (Debian's docker-registry, distribution 2.8), skopeo as its client, curl, redis-server (the
# registry's blob-descriptor cache), and moto (a local S3 server, from PyPI) for the registry's
# s3 driver.
set -euo pipefail
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The tests start it as `python3 -m moto.server`, so no PATH entry is needed.
if ! python3 -c 'import moto.server' 2>/dev/null; then
  echo "installing moto[server] (pip)" >&2
  python3 -m pip install --quiet 'moto[server]>=5,<6' ||
    python3 -m pip install --quiet --break-system-packages 'moto[server]>=5,<6'
fi
