"""The nodes' log files of a local cluster, read from a mark: what the chaos tool and the failover bench
look for (FENCED, PROMOTED, errors) after a moment they chose."""
from __future__ import annotations

import os
from typing import Dict, Iterator, List, Tuple


def log_files(cluster_dir: str, all_logs: bool = False) -> List[Tuple[str, str]]:
    """(node, path) of every node log that can hold mysqlpilot's lines: each job's <job>.log under the
    builtin supervisor, containerpilot.log under the real ContainerPilot. mysqld's own only if asked."""
    base = os.path.join(cluster_dir, "nodes")
    out = []
    for node in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        logs = os.path.join(base, node, "logs")
        for f in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            if f.endswith(".log") and (all_logs or f != "mysql.log"):
                out.append((node, os.path.join(logs, f)))
    return out


def marks(cluster_dir: str) -> Dict[str, int]:
    """Each log's size now: read_since() from these gives what was written after."""
    out = {}
    for _, path in log_files(cluster_dir):
        try:
            out[path] = os.path.getsize(path)
        except OSError:
            pass
    return out


def read_since(cluster_dir: str, since: Dict[str, int]) -> Iterator[Tuple[str, str, str]]:
    """(node, path, text written since the mark) for every log that can still be read."""
    for node, path in log_files(cluster_dir):
        try:
            with open(path, "rb") as fh:
                fh.seek(since.get(path, 0))
                text = fh.read().decode(errors="replace")
        except OSError:
            continue
        yield node, path, text
