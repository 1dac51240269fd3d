#!/usr/bin/env bash
# Install whatever is missing, start a 3-node cluster on this machine, and print its status.
# Runs from the project virtualenv that install-deps.sh keeps ($MYSQLPILOT_VENV, default .venv).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-deps.sh
venv=${MYSQLPILOT_VENV:-$here/.venv}
export PATH="$venv/bin:$PATH"     # as `activate` does: weed, mysqlpilot and friends from the venv
py="$venv/bin/python"
dir=${MYSQLPILOT_DEMO_DIR:-$here/.cache/demo}
"$py" -m mysqlpilot local up --nodes "${NODES:-3}" --dir "$dir"
MYSQLPILOT_CONFIG="$dir/mysqlpilot.yaml" "$py" -m mysqlpilot status
rel=${venv#"$here"/}
echo
echo "Try: . $rel/bin/activate          # or call $rel/bin/mysqlpilot"
echo "     MYSQLPILOT_CONFIG=$dir/mysqlpilot.yaml mysqlpilot status --json"
echo "     mysqlpilot local kill node1 --dir $dir --signal KILL   # then watch the failover"
echo "     mysqlpilot local down --dir $dir"
