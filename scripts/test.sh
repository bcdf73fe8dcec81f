#!/usr/bin/env bash
# Install what the tests need and run the whole suite: ./scripts/test.sh [pytest args]
#
# Uses REDIS_URL and DATABASE_URL when set. Otherwise uses a Redis on 127.0.0.1:6379 if one
# answers, or starts a private one. Debian's redis-server is installed when missing, in any
# case: the outage and soak tests start their own (CI=1: a test that cannot run fails). The
# database is SQLite unless DATABASE_URL names PostgreSQL. The browser tests use Debian's
# Chromium at /usr/bin/chromium (installed if missing, when run as root) or CHROMIUM.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_common.sh
. scripts/_common.sh

ensure_venv -e . --group test

cleanup_pids=()
cleanup() { for pid in "${cleanup_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# The redis-server binary, whatever Redis the suite talks to: the outage, fault and soak
# tests start and kill private ones (without it they are skipped, and fail under CI=1).
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing redis-server"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null ||
      die "could not install redis-server (the outage and soak tests need it)"
  elif [ -n "${CI:-}" ]; then
    die "the outage and soak tests need redis-server on the PATH (Debian: apt-get install redis-server)"
  else
    echo "==> no redis-server: the outage, fault and soak tests will be skipped"
  fi
fi

if [ -z "${REDIS_URL:-}" ]; then
  if redis_ping 127.0.0.1 6379; then
    export REDIS_URL="redis://127.0.0.1:6379/0"
  else
    command -v redis-server >/dev/null 2>&1 ||
      die "Redis is needed: install redis-server or set REDIS_URL=redis://HOST:PORT/0"
    port=6390
    while tcp_open 127.0.0.1 "$port"; do port=$((port + 1)); done
    echo "==> starting a private redis-server on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
      >/dev/null 2>&1 &
    cleanup_pids+=("$!")
    for _ in $(seq 50); do redis_ping 127.0.0.1 "$port" && break; sleep 0.1; done
    redis_ping 127.0.0.1 "$port" || die "redis-server did not start on port $port"
    export REDIS_URL="redis://127.0.0.1:$port/0"
  fi
fi
echo "==> Redis: $REDIS_URL   database: ${DATABASE_URL:-SQLite}"

# The browser tests (tests/e2e) drive Debian's Chromium through Playwright; Playwright's
# own browser download is never used. CHROMIUM=/path/to/chromium picks another binary.
if [ -n "${CHROMIUM:-}" ]; then
  [ -x "$CHROMIUM" ] || die "CHROMIUM=$CHROMIUM is not an executable file"
else
  CHROMIUM=/usr/bin/chromium
  if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "==> installing chromium"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null || die "could not install chromium; install it or set CHROMIUM=/path/to/chromium"
    fi
    [ -x "$CHROMIUM" ] ||
      die "the browser tests need Chromium at /usr/bin/chromium (Debian: apt-get install chromium), or set CHROMIUM=/path/to/chromium"
  fi
fi
export CHROMIUM
echo "==> Chromium: $CHROMIUM"

# Firefox: tests/e2e/test_firefox.py drives Debian's firefox-esr over WebDriver BiDi with
# puppeteer-core (from package-lock.json, below). FIREFOX=/path/to/firefox picks another.
if [ -n "${FIREFOX:-}" ]; then
  [ -x "$FIREFOX" ] || die "FIREFOX=$FIREFOX is not an executable file"
else
  FIREFOX=/usr/bin/firefox-esr
  if [ ! -x "$FIREFOX" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "==> installing firefox-esr"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr) \
        >/dev/null || die "could not install firefox-esr; install it or set FIREFOX=/path/to/firefox"
    fi
    [ -x "$FIREFOX" ] ||
      die "the Firefox tests need /usr/bin/firefox-esr (Debian: apt-get install firefox-esr), or set FIREFOX=/path/to/firefox"
  fi
fi
export FIREFOX
echo "==> Firefox: $FIREFOX"

# coturn: the TURN relay test starts a real one on 127.0.0.1.
if ! command -v turnserver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing coturn"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn) \
      >/dev/null || die "could not install coturn (the TURN test needs turnserver)"
  else
    die "the TURN test needs coturn's turnserver on the PATH (Debian: apt-get install coturn)"
  fi
fi

# nftables and iproute2: the call-quality tests (tests/e2e/test_quality.py) build a network
# namespace with a veth pair (ip) and drop a share of its packets (nft); they run as root.
if ! PATH="$PATH:/usr/sbin:/sbin" command -v nft >/dev/null 2>&1 ||
  ! PATH="$PATH:/usr/sbin:/sbin" command -v ip >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing nftables and iproute2"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2) \
      >/dev/null || die "could not install nftables/iproute2 (the call-quality tests need them)"
  else
    die "the call-quality tests need nft and ip, as root (Debian: apt-get install nftables iproute2)"
  fi
fi

# nginx and openssl: the topology test (tests/e2e/test_topology.py) runs Debian's nginx in
# front of the ASGI workers, with its own configuration in a temporary directory (never
# /etc/nginx's), on a self-signed certificate that openssl makes.
if ! PATH="$PATH:/usr/sbin:/sbin" command -v nginx >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing nginx and openssl"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx openssl) \
      >/dev/null || die "could not install nginx and openssl (the topology test needs them)"
  else
    die "the topology test needs nginx and openssl (Debian: apt-get install nginx openssl)"
  fi
fi

# GNU gettext: tests/test_locale.py compiles the shipped catalogs (directcall/locale) to
# check the committed .mo files (scripts/messages.sh makes them).
if ! command -v msgfmt >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing gettext"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext) \
      >/dev/null || die "could not install gettext (the catalog tests need msgfmt)"
  else
    die "the catalog tests need GNU gettext's msgfmt (Debian: apt-get install gettext)"
  fi
fi

# A Devanagari font: the browser tests photograph the call screens in Hindi for the docs
# (Debian's Chromium draws missing glyphs as boxes; Arabic is in DejaVu already).
if ! fc-list 2>/dev/null | grep -qi devanagari; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing fonts-lohit-deva"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-lohit-deva) \
      >/dev/null || die "could not install fonts-lohit-deva (the Hindi screenshots need it)"
  else
    echo "==> no Devanagari font (apt-get install fonts-lohit-deva): Hindi screenshots show boxes"
  fi
fi

# node runs the SDK's unit tests; npm fetches the real CleverTap Web SDK that the browser
# tests load (into .cache/, never committed).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing nodejs and npm"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) \
      >/dev/null || die "could not install nodejs/npm; install Node.js 18 or newer"
  else
    die "the SDK tests need Node.js 18 or newer (node and npm on the PATH)"
  fi
fi
CLEVERTAP_SDK=.cache/npm/node_modules/clevertap-web-sdk/clevertap.js
if [ ! -f "$CLEVERTAP_SDK" ]; then
  echo "==> fetching clevertap-web-sdk (npm)"
  npm install --silent --no-audit --no-fund --prefix .cache/npm clevertap-web-sdk@2.5.2 >/dev/null ||
    die "npm could not install clevertap-web-sdk"
fi
export CLEVERTAP_SDK="$PWD/$CLEVERTAP_SDK"

# The SDK's npm package (package.json). `npm ci` installs its pinned build tools (esbuild,
# typescript) and the Firefox driver's puppeteer-core exactly as package-lock.json says,
# again whenever the lock file changes; `npm pack` builds the tarball a release publishes
# (into .cache/npm-pack/). The tests pack and install their own copy of it.
npm_lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.directcall-lock 2>/dev/null)" != "$npm_lock" ]; then
  echo "==> npm ci"
  npm ci --silent --no-audit --no-fund >/dev/null || die "npm ci failed (package-lock.json)"
  echo "$npm_lock" > node_modules/.directcall-lock
fi
mkdir -p .cache/npm-pack
# (prepack's build prints a line before npm's own: the file name is the last line)
npm_tarball=$(npm pack --silent --pack-destination .cache/npm-pack | tail -n 1) ||
  die "npm pack failed"
echo "==> npm pack: .cache/npm-pack/$npm_tarball"

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "==> pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  die "pytest collected no tests"
fi
exit "$rc"
