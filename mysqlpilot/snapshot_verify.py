"""Proving a snapshot restorable: restore it into a scratch datadir, replay the archive to a GTID a live
replica holds, and compare every table's checksum with that replica's at the same GTID.

The replica's checksums are read under FLUSH TABLES WITH READ LOCK: its SQL thread stays running (the HA
loop sees a healthy replica, lagging for the seconds the checksums take) but commits nothing, so the
GTID read before them is the state they describe. Without the archive (config key archive off) the
snapshot is restored and started alone, and only that is proven. The result is kept in the store beside
the snapshot (`verified.json`)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Optional

from . import gtid as gtidlib
from .accounts import remote_server
from .binlog_catalog import archived_set, read_runs
from .errors import PilotError
from .flavors.base import quote_ident
from .model import SnapshotManifest
from .pitr_plan import Target
from .pitr_restore import restore_to_point
from .snapshot_catalog import snapshot_dir
from .sqlclient import Server

log = logging.getLogger(__name__)

SYSTEM = ("mysql", "information_schema", "performance_schema", "sys")


@dataclass
class Verification:
    snapshot: str
    ok: bool
    at: float
    seconds: float
    gtid: str = ""                  # the point compared at
    reference: str = ""             # the replica compared with ("" without the archive)
    tables: int = 0
    mismatched: Dict[str, str] = field(default_factory=dict)    # table -> "restored X, replica Y"
    why: str = ""

    def line(self) -> str:
        if not self.ok:
            return f"snapshot {self.snapshot}: NOT proven restorable: {self.why}"
        if self.reference:
            return (f"snapshot {self.snapshot}: restorable; {self.tables} tables match {self.reference} at GTID "
                    f"{self.gtid} ({self.seconds:.1f}s)")
        return f"snapshot {self.snapshot}: restorable (restored and started; {self.why}) ({self.seconds:.1f}s)"


def checksums(srv: Server) -> Dict[str, str]:
    rows = srv.query("SELECT table_schema AS s, table_name AS t FROM information_schema.tables WHERE "
                     "table_type = 'BASE TABLE' AND table_schema NOT IN "
                     f"({', '.join(repr(s) for s in SYSTEM)}) ORDER BY 1, 2")
    out = {}
    for r in rows:
        name = f"{quote_ident(r['s'])}.{quote_ident(r['t'])}"
        got = srv.query(f"CHECKSUM TABLE {name}")
        out[f"{r['s']}.{r['t']}"] = str(got[0].get("Checksum") if got else None)
    return out


def reference_point(srv: Server) -> tuple:
    """(GTID, checksums) of a replica, consistent: nothing commits between the two reads."""
    srv.execute("FLUSH TABLES WITH READ LOCK")
    try:
        return srv.gtid_executed(), checksums(srv)
    finally:
        srv.execute("UNLOCK TABLES")


def verify(cfg, flavor, store, manifest: SnapshotManifest, replica: Optional[Server], ref_name: str = "",
           echo: Callable[[str], None] = log.info, archive_wait: float = 60) -> Verification:
    t0 = time.monotonic()
    scratch = os.path.join(cfg.state_dir, f"verify-{manifest.id}")
    if os.path.exists(scratch):
        raise PilotError(f"{scratch} exists: a verification of {manifest.id} is running, or one failed; remove it")
    v = Verification(manifest.id, False, time.time(), 0.0)
    try:
        if cfg.archive and replica is not None:
            g, ref = reference_point(replica)
            v.gtid, v.reference = g, ref_name
            echo(f"verify: {len(ref)} tables checksummed on {ref_name} at GTID {g}; waiting for the archive")
            deadline = time.monotonic() + archive_wait
            while not gtidlib.contains(flavor.dialect, archived_set(read_runs(store, cfg.cluster), flavor.dialect), g):
                if time.monotonic() > deadline:
                    raise PilotError(f"the archive did not reach GTID {g} within {archive_wait:.0f}s: is it "
                                     "streaming? (mysqlpilot status)")
                time.sleep(1)
            res = restore_to_point(cfg, flavor, store, Target(gtid=g), os.path.join(scratch, "data"), echo=echo,
                                   snapshot=manifest, inspect=checksums)
            mine = res.inspected or {}
            v.tables = len(ref)
            v.mismatched = {t: f"restored {mine.get(t)}, replica {ref.get(t)}" for t in sorted(set(ref) | set(mine))
                            if mine.get(t) != ref.get(t)}
            v.ok = not v.mismatched
            if not v.ok:
                v.why = (f"{len(v.mismatched)} of {len(set(ref) | set(mine))} tables differ from {ref_name} at GTID "
                         f"{g}: " + "; ".join(f"{t}: {d}" for t, d in list(v.mismatched.items())[:3]))
        else:
            res = restore_to_point(cfg, flavor, store, Target(gtid=manifest.gtid), os.path.join(scratch, "data"),
                                   echo=echo, snapshot=manifest, inspect=checksums)
            v.tables, v.ok = len(res.inspected or {}), True
            v.why = ("archive off: no live point to compare with" if not cfg.archive
                     else "no healthy replica to compare with")
    except PilotError as exc:
        v.why = str(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)      # made by this verification
    v.seconds = round(time.monotonic() - t0, 1)
    try:
        store.put_bytes(f"{snapshot_dir(cfg.cluster, manifest.id)}/verified.json",
                        json.dumps(asdict(v), sort_keys=True).encode())
    except Exception as exc:  # noqa: BLE001 - the verdict stands; only its record is lost
        log.warning("verify: the result could not be recorded in the store: %s", exc)
    return v


def healthy_replica(cfg, flavor, dcs) -> tuple:
    """(Server, name) of a healthy replica, as the agent account over TCP; (None, "") when there is none."""
    for m in sorted(dcs.members(), key=lambda m: (float("inf") if m.lag_seconds is None else m.lag_seconds, m.name)):
        if m.role == "replica" and m.healthy and m.alive and m.name != cfg.node_name:
            return remote_server(Server, flavor, cfg, m.host, m.port, read_timeout=600), m.name
    return None, ""
