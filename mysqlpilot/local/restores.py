"""`mysqlpilot local restore`: a point-in-time restore of a local cluster, started as a standalone server.

Each restore lives in DIR/restores/NAME (its datadir, my.cnf, socket, logs). Its mysqld listens on
127.0.0.1 on a free port and replicates from nobody; `local down` stops it and keeps its data."""
from __future__ import annotations

import os
import zlib
from typing import Callable, List

from .. import mysqld
from ..errors import PilotError
from ..flavors import get_flavor
from ..pitr_plan import Target
from ..pitr_restore import restore_to_point
from ..store import open_store
from .ports import free_port


class LocalRestores:
    def __init__(self, dir: str, cluster_cfg, echo: Callable[[str], None] = print):
        self.dir, self.cfg, self.echo = os.path.join(os.path.abspath(dir), "restores"), cluster_cfg, echo

    def server_cfg(self, name: str, port: int = 0):
        base = os.path.join(self.dir, name)
        return self.cfg.with_overrides(
            datadir=os.path.join(base, "data"), state_dir=base, socket=os.path.join(base, "mysqld.sock"),
            mycnf=os.path.join(base, "my.cnf"), bind_address="127.0.0.1", port=port or 3306,
            node_name=f"restore-{name}", server_id=1_000_000 + zlib.crc32(name.encode()) % 1_000_000)

    def restore(self, name: str, target: Target, force: bool = False) -> str:
        if not name or "/" in name or name.startswith("."):
            raise PilotError(f"--name {name!r}: use a plain name (letters, digits, dashes)")
        base = os.path.join(self.dir, name)
        if os.path.exists(base):
            raise PilotError(f"a restore named {name} exists ({base}); choose another --name")
        flavor = get_flavor(self.cfg.flavor, self.cfg.flavor_version)
        os.makedirs(base)
        scfg = self.server_cfg(name, free_port("127.0.0.1"))
        restore_to_point(self.cfg, flavor, open_store(self.cfg), target, scfg.datadir, force=force, echo=self.echo)
        mysqld.write_mycnf(scfg, flavor)
        proc = mysqld.start_mysqld(scfg, flavor)
        mysqld.wait_ready(scfg, 300, proc)
        addr = f"127.0.0.1:{scfg.port}"
        self.echo(f"restore {name}: mysqld answers on {addr} (socket {scfg.socket}); read-only, replicating "
                  f"from nobody; datadir {scfg.datadir}")
        return addr

    def names(self) -> List[str]:
        return sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []

    def stop_all(self) -> None:
        for name in self.names():
            if mysqld.stop_mysqld(self.server_cfg(name)):
                self.echo(f"restore {name}: mysqld stopped; data kept")
