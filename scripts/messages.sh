#!/bin/sh
# directcall's translation catalogs (directcall/locale/<lang>/LC_MESSAGES/django.po):
# extract the package's strings into them, then compile the .mo files, which are committed
# (a wheel ships them; Django does not compile catalogs at run time).
#   ./scripts/messages.sh            extract + compile every shipped language
#   ./scripts/messages.sh compile    compile only
# Needs GNU gettext (Debian: apt-get install gettext). tests/test_locale.py checks the result.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
LANGUAGES="es hi ar"
cd "$ROOT/directcall"
mkdir -p locale
if [ "${1:-}" != "compile" ]; then
  set --
  for lang in $LANGUAGES; do set -- "$@" -l "$lang"; done
  "$PYTHON" -m django makemessages "$@" --add-location=file --no-obsolete
fi
"$PYTHON" -m django compilemessages
