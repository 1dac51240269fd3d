#!/usr/bin/env bash
# Install whatever is missing, then run the whole test suite: unit tests, then integration tests
# against real Consul, the database servers (+ their snapshot tools) and SeaweedFS started on loopback by
# the tests. Runs from the project virtualenv that install-deps.sh keeps ($MYSQLPILOT_VENV, default
# .venv); the tests start `mysqlpilot` as `sys.executable -m mysqlpilot`, so they stay inside it.
#
# Without arguments, the suite runs in three legs, each timed:
#   sim:     bench/sim.py, 6,000 seeds (3 minutes at most) of the deterministic simulator of the HA
#            protocol (no servers);
#   mariadb: unit tests, the tests that need no database server, and every flavored integration test
#            on MariaDB 10.11 (Debian's mariadbd + mariadb-backup);
#   mysql:   the flavored integration tests again on Oracle MySQL 9.7 (the Debian sid root of
#            install-deps.sh, run by scripts/mysqld-sid; snapshots by CLONE).
# Both legs run even if the first fails. Paths given (`bash scripts/test.sh tests/unit`) run once
# instead, every flavor included, in place of the default testpaths (tests/).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-deps.sh
venv=${MYSQLPILOT_VENV:-$here/.venv}
export PATH="$venv/bin:$PATH"     # as `activate` does: weed, mysqlpilot and friends from the venv
export PYTHONUNBUFFERED=1
opts=(-q -ra -p no:cacheprovider --durations=20)
if [ $# -gt 0 ]; then
  exec "$venv/bin/python" -m pytest "${opts[@]}" "$@"
fi
rc=0
ts=$(date +%s)
# The deterministic simulator (issue 19): 6,000 seeds of the short scenario over every core, at most 3
# minutes (a slower machine runs fewer and says how many); a violation fails the suite (known findings do
# not). Its JSON (coverage included) is kept for a look afterwards (docs/reliability.md, "Deterministic
# simulation"). Each seed draws the failsafe on or off (config key failsafe, on by default).
"$venv/bin/python" bench/sim.py --seeds "${MYSQLPILOT_SIM_SEEDS:-6000}" --minutes 3 --scenario short --failsafe draw \
  --json "${TMPDIR:-/tmp}/mysqlpilot-sim.json" || rc=1
t0=$(date +%s)
MYSQLPILOT_TEST_FLAVORS=mariadb "$venv/bin/python" -m pytest "${opts[@]}" || rc=1
t1=$(date +%s)
MYSQLPILOT_TEST_FLAVORS=mysql MYSQLPILOT_TEST_FLAVORED_ONLY=1 "$venv/bin/python" -m pytest "${opts[@]}" \
  tests/integration || rc=1
t2=$(date +%s)
echo "test.sh: sim leg $((t0 - ts))s, mariadb leg $((t1 - t0))s, mysql leg $((t2 - t1))s, total $((t2 - ts))s:" \
  "$([ "$rc" = 0 ] && echo passed || echo FAILED)"
exit "$rc"
