"""Network partitions of a local cluster: each node's processes in a cgroup (v2) of their own, so that
nftables rules on the shared loopback can cut one node off from Consul, its clients or its replicas.
A part of LocalCluster (it uses the registry: `load`, `save`, `node`, `dir`, `echo`)."""
from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Dict, Optional, Tuple

from ..errors import PilotError

PARTITIONABLE = 16          # nodes 1..16 reach Consul on their own address 127.0.2.K


class Partitions:
    # ---- per-node cgroups (v2): which node a socket belongs to ---------------------------------
    @staticmethod
    def cgroup2_mount() -> Optional[str]:
        try:
            with open("/proc/self/mounts") as fh:
                for line in fh:
                    f = line.split()
                    if len(f) > 2 and f[2] == "cgroup2":
                        return f[1]
        except OSError:
            pass
        return None

    def cgroup_parent(self) -> Optional[str]:
        root = self.cgroup2_mount()
        return os.path.join(root, self.nft_table()) if root else None

    def node_cgroup(self, name: str, create: bool = False) -> Optional[str]:
        """<cgroup2>/mysqlpilot_<hash>/<node>, or None where cgroup v2 cannot be used (not root, none
        mounted): the node then runs in ours and only `--replicas-only` partitions are unavailable."""
        parent = self.cgroup_parent()
        if not parent:
            return None
        path = os.path.join(parent, name)
        if create:
            try:
                os.makedirs(path, exist_ok=True)
            except OSError:
                return None
        return path if os.path.isdir(path) else None

    def remove_cgroups(self, reg: Dict) -> None:
        """Best effort: a cgroup goes once its processes have (a non-empty one stays)."""
        parent = self.cgroup_parent()
        if not parent or not os.path.isdir(parent):
            return
        for name in list(reg["nodes"]) + [""]:
            try:
                os.rmdir(os.path.join(parent, name) if name else parent)
            except OSError:
                pass

    def nft_cgroup(self, name: str) -> Tuple[int, str]:
        """(level, path) of a node's cgroup as nft's `socket cgroupv2` wants them: the path relative to
        /sys/fs/cgroup (where nft looks it up), the level counted from the cgroup2 root."""
        path = self.node_cgroup(name)
        root = self.cgroup2_mount()
        if not path or not root:
            raise PilotError(f"{name} has no cgroup of its own (cgroup v2 not mounted, or not root): "
                             "--replicas-only needs one to tell its connections apart on loopback")
        level = len(os.path.relpath(path, root).split(os.sep))
        return level, os.path.relpath(path, "/sys/fs/cgroup")

    # ---- network partitions (nftables, loopback only) ------------------------------------------
    def nft_table(self) -> str:
        return "mysqlpilot_" + hashlib.sha1(self.dir.encode()).hexdigest()[:10]

    def apply_partitions(self, reg: Dict) -> None:
        import shutil
        nft = shutil.which("nft") or "/usr/sbin/nft"
        if not os.access(nft, os.X_OK):
            raise PilotError("nft is not installed: run scripts/install-deps.sh (it installs nftables)")
        table = self.nft_table()
        port = reg["consul"].rsplit(":", 1)[1]
        rules = []
        for name, n in sorted(reg["nodes"].items()):
            mode = n.get("partitioned")
            if not mode:
                continue
            if n["k"] > PARTITIONABLE:
                raise PilotError(f"{name} cannot be partitioned: only node1..node{PARTITIONABLE} have their own "
                                 "Consul address")
            # Dropped, not rejected: a partition looks like silence, and calls time out.
            if mode == "replicas":
                # Only between this node and the other nodes, both ways (replication, the HA loops'
                # probes): Consul and every other client (the harness, applications) still reach it.
                lvl, cg = self.nft_cgroup(name)
                for other, o in sorted(reg["nodes"].items()):
                    if other == name:
                        continue
                    olvl, ocg = self.nft_cgroup(other)
                    rules.append(f'ip daddr {n["host"]} tcp dport {n["port"]} socket cgroupv2 level {olvl} '
                                 f'"{ocg}" drop')
                    rules.append(f'ip daddr {o["host"]} tcp dport {o["port"]} socket cgroupv2 level {lvl} '
                                 f'"{cg}" drop')
                continue
            rules.append(f"ip daddr 127.0.2.{n['k']} tcp dport {port} drop")
            if mode == "full":
                rules.append(f"ip daddr {n['host']} tcp dport {n['port']} drop")
        script = f"table inet {table}\ndelete table inet {table}\n"
        if rules:
            script += f"table inet {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
            script += "".join(f"  {r}\n" for r in rules) + " }\n}\n"
        p = subprocess.run([nft, "-f", "-"], input=script, text=True, capture_output=True)
        if p.returncode != 0:
            raise PilotError(f"nft refused the partition rules: {p.stderr.strip().splitlines()[0] if p.stderr else p.returncode}")

    def partition(self, name: str, full: bool = False, replicas_only: bool = False) -> None:
        if full and replicas_only:
            raise PilotError("--full and --replicas-only exclude each other")
        reg = self.load()
        self.node(reg, name)["partitioned"] = "full" if full else ("replicas" if replicas_only else "consul")
        self.apply_partitions(reg)
        self.save(reg)
        self.echo(f"{name} cut off from the other nodes (Consul and clients still reach it)" if replicas_only
                  else f"{name} cut off from Consul" + (" and from every mysqld client" if full else ""))

    def heal(self, name: str) -> None:
        reg = self.load()
        self.node(reg, name).pop("partitioned", None)
        self.apply_partitions(reg)
        self.save(reg)
        self.echo(f"{name} reconnected")
