#!/usr/bin/env bash
# Start the demo site on the embedded default (SQLite, in-memory channel layer, no Redis),
# and the task worker that delivers webhooks:
#   ./scripts/demo.sh            -> http://127.0.0.1:8000/
#   PORT=9000 ./scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_common.sh
. scripts/_common.sh

ensure_venv -e ".[demo]"
port="${PORT:-8000}"
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py demo_setup --url "http://127.0.0.1:$port/"
# Webhook deliveries run in the background task worker (docs/webhooks.md): start it beside
# the site and stop it with it.
.venv/bin/python manage.py db_worker --no-reload --no-startup-delay -v 0 &
worker=$!
trap 'kill "$worker" 2>/dev/null || true' EXIT
.venv/bin/python manage.py runserver "127.0.0.1:$port"
