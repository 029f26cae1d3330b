#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv. Idempotent: does nothing when
# .venv is already installed from the current pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.promptgov-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "bootstrap: installing .venv (python: $($PY --version))" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check uv
# Compile bytecode at install: this environment may set PYTHONDONTWRITEBYTECODE, and without
# .pyc files every start-up (e.g. the `promptgov check` pre-commit hook) pays to recompile.
.venv/bin/uv pip install --quiet --python .venv/bin/python --compile-bytecode -e '.[dev]'
echo "$want" > "$stamp"
