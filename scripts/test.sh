#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite: unit tests, then integration tests
# against real Consul, MariaDB (+ mariadb-backup) and SeaweedFS started on loopback by the tests.
# Runs from the project virtualenv that install-deps.sh keeps ($MYSQLPILOT_VENV, default .venv); the
# tests start `mysqlpilot` as `sys.executable -m mysqlpilot`, so they stay inside it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-deps.sh
venv=${MYSQLPILOT_VENV:-$here/.venv}
export PATH="$venv/bin:$PATH"     # as `activate` does: weed, mysqlpilot and friends from the venv
export PYTHONUNBUFFERED=1
# Paths given (`bash scripts/test.sh tests/unit`) replace the default, pyproject's testpaths (tests/).
exec "$venv/bin/python" -m pytest -q -ra -p no:cacheprovider --durations=20 "$@"
