# Sourced by scripts/run and scripts/test: create .venv and install AeroSync into it.
# Silent when nothing changed (the stamp records what was installed); one line on stderr
# when it (re)installs; pip's output only when installing fails (it is kept in
# .venv/pip-install.log).  The interpreter probe never prints: an existing .venv's own
# interpreter is used without probing, and failed probes (pyenv shims of versions that
# are not selected print "command not found") are silenced.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

_aerosync_py_ok() {  # $1 runs and is Python >= 3.11; says nothing either way
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

REASON=""
if [ ! -x "$VENV/bin/python" ] || ! _aerosync_py_ok "$VENV/bin/python"; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then
    for cand in python3.13 python3.12 python3.11 python3; do
      if _aerosync_py_ok "$cand"; then
        PY="$cand"; break
      fi
    done
  elif ! _aerosync_py_ok "$PY"; then
    echo "AeroSync needs Python 3.11 or newer: PYTHON=$PY is not one" >&2
    exit 2
  fi
  if [ -z "$PY" ]; then
    echo "AeroSync needs Python 3.11 or newer (none found on PATH; set PYTHON=/path/to/python3.11)" >&2
    exit 2
  fi
  if ! "$PY" -m venv --clear "$VENV" >/dev/null 2>&1; then
    echo "AeroSync: '$PY -m venv $VENV' failed (on Debian/Ubuntu: apt install python3-venv)" >&2
    exit 2
  fi
  REASON="new .venv made with $PY"
fi
EXTRAS="${AEROSYNC_EXTRAS:-test,profile}"
STAMP="$VENV/.aerosync-installed"
WANT="$(sha256sum < "$ROOT/pyproject.toml" | cut -c1-16) $EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  LOG="$VENV/pip-install.log"
  echo "AeroSync: ${REASON:-pyproject.toml or extras changed since the last install}; installing" \
       "aerosync[$EXTRAS] into $VENV (pip log: $LOG)" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip >"$LOG" 2>&1 || true
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$ROOT[$EXTRAS]" >>"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "AeroSync: installing into $VENV failed (pip's output above, also in $LOG)" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
