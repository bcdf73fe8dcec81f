# Shared by scripts/demo.sh and scripts/test.sh: find Python, make .venv, install.
# shellcheck shell=bash

die() { echo "error: $*" >&2; exit 1; }

# ensure_venv EXTRA_PIP_ARGS... : create .venv with Python >= 3.11 and install the project.
ensure_venv() {
  local py=""
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py=$(command -v "$candidate"); break
    fi
  done
  [ -n "$py" ] || die "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)."
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $py"
    "$py" -m venv .venv || die "could not create .venv (Debian: apt-get install python3-venv)"
  fi
  # Reinstall only when pyproject.toml or the requested extras change.
  # One stamp per set of install arguments, so the demo and the tests don't undo each other.
  local args_id want stamp
  args_id=$(printf '%s' "$*" | sha256sum | cut -c1-12)
  stamp=".venv/.directcall-installed-$args_id"
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing into .venv ($*)"
    .venv/bin/python -m pip install --quiet --upgrade "pip>=25.1" || die "pip upgrade failed"
    .venv/bin/python -m pip install --quiet "$@" || die "pip install $* failed"
    echo "$want" > "$stamp"
  fi
}

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# redis_ping HOST PORT: true when a Redis answers PONG there.
redis_ping() {
  local reply=""
  # The braces keep 2>/dev/null to this one command: on a bare `exec` it would silence
  # the script's stderr (every later error message) for good.
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  read -r -t 3 reply <&3 || true
  exec 3<&- 3>&-
  [[ "$reply" == "+PONG"* ]]
}
