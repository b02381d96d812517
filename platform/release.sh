#!/usr/bin/env bash
# The release step: runs once per deploy, before new web/worker/beat processes start.
# docker-compose.yml runs it as the one-shot `migrate` service; on other platforms run it as the
# release/pre-deploy command. Migrations never run inside start-web.sh (N web replicas would race).
set -euo pipefail

cd "$(dirname "$0")/.."  # the project root: /app in the image
python manage.py migrate --noinput
