#!/usr/bin/env bash
# The release step: runs once per deploy, before new web/worker/beat processes start.
# docker-compose.yml runs it as the one-shot `migrate` service; on other platforms run it as the
# release/pre-deploy command. Migrations never run inside start-web.sh (N web replicas would race).
set -euo pipefail

cd /app 2>/dev/null || true
python manage.py migrate --noinput
python manage.py check --deploy --fail-level ERROR
