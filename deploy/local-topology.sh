#!/usr/bin/env bash
# The production topology on one machine (docs/deployment.md):
#   ./deploy/local-topology.sh                      -> https://127.0.0.1:PORT/ (printed)
#   ./deploy/local-topology.sh --workers 3 --server daphne --layer pubsub
#
# nginx (TLS, self-signed) -> ASGI workers -> a private Redis and a PostgreSQL database of
# its own, and coturn; all on 127.0.0.1, as the current user, with configuration files in
# a temporary directory (see deploy/topology.py). Installs nginx, coturn, redis-server and
# openssl from Debian when run as root and they are missing; PostgreSQL is DATABASE_URL's
# server if it names one, else postgres://postgres@127.0.0.1:5432. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_common.sh
. scripts/_common.sh

# uvicorn: the workers' ASGI server (deploy/topology.py's SERVER); daphne comes with directcall.
ensure_venv -e ".[demo,uvicorn]"

missing=()
for pair in nginx:nginx turnserver:coturn redis-server:redis-server openssl:openssl; do
  program=${pair%%:*}
  PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      >/dev/null || die "could not install ${missing[*]}"
  else
    die "the topology needs ${missing[*]}: apt-get install ${missing[*]} (as root)"
  fi
fi

exec .venv/bin/python -m deploy.topology "$@"
