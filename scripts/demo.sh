#!/usr/bin/env bash
# Install whatever is missing, start a 3-node cluster on this machine, and print its status.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install-deps.sh
dir=${MYSQLPILOT_DEMO_DIR:-$here/.cache/demo}
python3 -m mysqlpilot local up --nodes "${NODES:-3}" --dir "$dir"
MYSQLPILOT_CONFIG="$dir/mysqlpilot.yaml" python3 -m mysqlpilot status
echo
echo "Try: MYSQLPILOT_CONFIG=$dir/mysqlpilot.yaml python3 -m mysqlpilot status --json"
echo "     python3 -m mysqlpilot local kill node1 --dir $dir --signal KILL   # then watch the failover"
echo "     python3 -m mysqlpilot local down --dir $dir"
