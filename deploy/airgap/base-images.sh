#!/bin/sh
# Build the two base images voxq's images and compose file start from, out of Debian packages,
# for hosts that reach a Debian mirror but no container registry (air-gapped builds).
#
#   deploy/airgap/base-images.sh [MIRROR]
#
#   localhost/voxq-base/python:3.11-bookworm  stands in for python:3.11.14-slim-bookworm:
#       pass it as --build-arg PYTHON_IMAGE=... to docker/podman build.
#   localhost/voxq-base/redis:7-bookworm      stands in for redis:7.4.6-alpine: set
#       REDIS_IMAGE=... for docker compose.
#
# MIRROR is a Debian mirror URL (default: deb.debian.org); the images keep it as their apt
# source, so the Dockerfile's own apt-get steps use it too. CA_BUNDLE, if set, is a PEM file
# that replaces the images' CA bundle and that pip trusts: the CA of a TLS-inspecting proxy
# between the builder and PyPI. ENGINE picks docker or podman (default: podman).
set -eu
MIRROR=${1:-http://deb.debian.org/debian}
ENGINE=${ENGINE:-podman}
PYTHON_TAG=${PYTHON_TAG:-localhost/voxq-base/python:3.11-bookworm}
REDIS_TAG=${REDIS_TAG:-localhost/voxq-base/redis:7-bookworm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

set -- --variant=minbase --include=ca-certificates
if [ -n "${CA_BUNDLE:-}" ]; then
  set -- "$@" --customize-hook="cp '$CA_BUNDLE' \"\$1/etc/ssl/certs/ca-certificates.crt\""
fi
common_env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Debian 12's Python is 3.11, as in the official image; python-is-python3 puts `python` on
# PATH, and python3-dev brings the headers the official image has (pyworld compiles against them).
mmdebstrap "$@" --include=python3,python3-venv,python3-dev,python-is-python3 \
  bookworm "$work/python.tar" "$MIRROR"
"$ENGINE" import \
  --change "ENV $common_env" --change "ENV LANG=C.UTF-8" \
  ${CA_BUNDLE:+--change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"} \
  --change 'CMD ["python3"]' "$work/python.tar" "$PYTHON_TAG"

# Like the official image: redis owns /data and runs there, so the AOF lands in the volume.
mmdebstrap "$@" --include=redis-server \
  --customize-hook='mkdir -p "$1/data" && chroot "$1" chown redis:redis /data' \
  bookworm "$work/redis.tar" "$MIRROR"
"$ENGINE" import \
  --change "ENV $common_env" --change "WORKDIR /data" --change 'CMD ["redis-server"]' \
  "$work/redis.tar" "$REDIS_TAG"
