#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite: unit tests, then integration tests
# against real Consul, MariaDB (+ mariadb-backup) and SeaweedFS started on loopback by the tests.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-deps.sh
export PYTHONUNBUFFERED=1
exec python3 -m pytest -q -ra -p no:cacheprovider --durations=20 "$@" tests
