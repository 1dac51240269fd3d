"""The binlog archive's layout in the store, and reading it back.

    clusters/<cluster>/binlogs/<run>/run.json                   one archiver's run on one primary
    clusters/<cluster>/binlogs/<run>/<file>/<start>.seg         bytes [start, end) of one binlog file
    clusters/<cluster>/binlogs/<run>/<file>/<start>.json        its manifest, written after the bytes

A run starts whenever a node becomes the primary (or its streamer restarts) and uploads whole binlog
files from the first one the archive does not fully hold. A segment without its manifest is an upload
cut short, and is ignored; the next upload from the same offset replaces both.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

from . import gtid as gtidlib
from .binlog_events import Txn
from .store.base import Store


def archive_prefix(cluster: str) -> str:
    return f"clusters/{cluster}/binlogs"


def segment_key(cluster: str, run: str, file: str, start: int, ext: str = "seg") -> str:
    return f"{archive_prefix(cluster)}/{run}/{file}/{start:012d}.{ext}"


def run_key(cluster: str, run: str) -> str:
    return f"{archive_prefix(cluster)}/{run}/run.json"


@dataclass
class RunManifest:
    id: str
    node: str
    server_id: int
    dialect: str
    started: float
    first_file: str
    archive_end: str = ""       # what the archive held when this run started
    gap: str = ""               # transactions neither the archive nor this server's binlogs have
    start_set: Optional[str] = None     # first_file's start set: where this run's history begins
    alive_at: float = 0.0       # the archiver's last word: everything the server wrote before is uploaded
    ended: float = 0.0
    closes: str = ""            # a run copied from another member's binlogs to close this gap

    @classmethod
    def from_dict(cls, d: dict) -> "RunManifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})      # a newer writer's fields are skipped

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Segment:
    run: str
    file: str
    start: int
    end: int
    sha256: str
    created: float
    txns: List[Tuple[str, int, int]] = field(default_factory=list)   # (gtid, offset, ts)
    start_set: Optional[str] = None         # only in a file's first segment
    last_ts: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def transactions(self) -> List[Txn]:
        return [Txn(g, o, t) for g, o, t in self.txns]


@dataclass
class ArchiveFile:
    """One binlog file of one run as the store holds it: its segments in order."""
    run: str
    name: str
    segments: List[Segment]

    @property
    def start_set(self) -> Optional[str]:
        return self.segments[0].start_set if self.segments and self.segments[0].start == 0 else None

    @property
    def hole(self) -> str:
        """Why the segments do not make the file from its start ("" when they do)."""
        at = 0
        for s in self.segments:
            if s.start != at:
                return f"bytes {at}-{s.start} of {self.name} (run {self.run}) are in no segment"
            at = s.end
        return ""

    @property
    def end(self) -> int:
        return self.segments[-1].end if self.segments else 0

    def transactions(self) -> List[Txn]:
        return [t for s in self.segments for t in s.transactions()]


@dataclass
class ArchiveRun:
    manifest: RunManifest
    files: List[ArchiveFile]

    @property
    def start_set(self) -> Optional[str]:
        """Where this run's history begins: kept in its manifest, since a prune may remove its first files."""
        if self.manifest.start_set is not None:
            return self.manifest.start_set
        return self.files[0].start_set if self.files else None

    @property
    def last_ts(self) -> int:
        return max((s.last_ts for f in self.files for s in f.segments), default=0)

    @property
    def covered_until(self) -> float:
        """Everything the server wrote up to this time is in the archive."""
        return max(self.manifest.alive_at, float(self.last_ts))


def read_runs(store: Store, cluster: str) -> List[ArchiveRun]:
    """Every run with its files and segments, oldest run first."""
    prefix = archive_prefix(cluster) + "/"
    manifests: Dict[str, RunManifest] = {}
    segs: Dict[str, Dict[str, List[Segment]]] = {}
    for key in store.list(prefix):
        rest = key[len(prefix):]
        if rest.endswith("/run.json"):
            m = RunManifest.from_dict(json.loads(store.get_bytes(key)))
            manifests[m.id] = m
        elif rest.endswith(".json"):
            s = Segment(**json.loads(store.get_bytes(key)))
            s.txns = [tuple(t) for t in s.txns]
            segs.setdefault(s.run, {}).setdefault(s.file, []).append(s)
    runs = []
    for rid, m in manifests.items():
        files = [ArchiveFile(rid, name, sorted(ss, key=lambda s: s.start))
                 for name, ss in sorted(segs.get(rid, {}).items())]
        runs.append(ArchiveRun(m, files))
    return sorted(runs, key=lambda r: (r.manifest.started, r.manifest.id))


def archived_set(runs: List[ArchiveRun], dialect: str) -> str:
    """Every transaction the archive holds (with each file's start set: what came before it)."""
    parts: List[str] = []
    for r in runs:
        for f in r.files:
            if f.start_set:
                parts.append(f.start_set)
            parts.extend(t.gtid for t in f.transactions())
    return gtidlib.union_all(dialect, parts)
