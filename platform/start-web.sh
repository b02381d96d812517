#!/usr/bin/env bash
# The web process: gunicorn serving config.wsgi. Static files were collected at build time and
# migrations run in the release step (platform/release.sh), never here.
set -euo pipefail

cd "$(dirname "$0")/.."  # the project root: /app in the image
exec gunicorn config.wsgi -c platform/gunicorn.conf.py
