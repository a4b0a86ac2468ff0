#!/usr/bin/env bash
# Installs the Python packages that the Python plugin SDK (plugins/sdk/python) needs, at
# the versions pinned in its requirements.txt. Idempotent: no network when all are there.
set -euo pipefail
cd "$(dirname "$0")/.."
req=plugins/sdk/python/requirements.txt
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then
  echo "py-deps: $PY not found; the Python plugin SDK needs Python >= 3.9" >&2
  exit 1
fi
# Every pinned name==version already installed? Then there is nothing to do.
if "$PY" - "$req" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
  exit 0
fi
echo "installing Python packages from $req" >&2
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r "$req"
