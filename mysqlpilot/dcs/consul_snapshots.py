"""The Consul keys of the snapshot pipeline: the `snapshots/latest` pointer (compare-and-set, watched by
replicas waiting for their first snapshot), the moved-aside counts and the generic session locks. A part
of ConsulDCS (it uses the adapter's `_call`, `key` and `c`), kept apart because it is its own protocol."""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, Optional, Tuple

from ..model import SnapshotManifest
from .base import parse_manifest

log = logging.getLogger(__name__)


class SnapshotKeys:
    def get_latest_snapshot(self) -> Optional[SnapshotManifest]:
        return self.latest_snapshot_with_index()[0]

    def set_latest_snapshot(self, manifest: Dict[str, Any]) -> None:
        self.put_json("snapshots/latest", manifest)

    def latest_snapshot_with_index(self) -> Tuple[Optional[SnapshotManifest], int]:
        """snapshots/latest (consistent read; None if unreadable) and its ModifyIndex; 0 when the key is
        absent, which as a check-and-set index means "only if still absent"."""
        _, item = self._call("read snapshots/latest", self.c.kv.get, self.key("snapshots/latest"),
                             consistency="consistent")
        return self._manifest(item), (int(item.get("ModifyIndex") or 0) if item else 0)

    def publish_snapshot(self, sid: str, manifest: Dict[str, Any], expected_index: int,
                         lock: Optional[str] = None, leader_session: Optional[str] = None) -> bool:
        """Write snapshots/latest in one Consul transaction that also proves `sid` still holds the
        leader lock (KV check-session on <kv_root>/leader), and with `lock` the lock locks/<lock> too, and
        that latest is unchanged since it was read at `expected_index` (KV cas; 0 = still absent). True
        if written; False if any check failed, and then nothing was written. Other failures raise
        PilotError. `leader_session`: a replica's snapshot proves the primary it followed (that session)
        still holds the leader lock; `sid` (its own) holds the snapshot lock."""
        import base64
        from consul.callback import CB

        value = base64.b64encode(json.dumps(manifest).encode()).decode()
        ops = [{"KV": {"Verb": "check-session", "Key": self.key("leader"), "Session": leader_session or sid}}]
        if lock:
            ops.append({"KV": {"Verb": "check-session", "Key": self.key(f"locks/{lock}"), "Session": sid}})
        ops.append({"KV": {"Verb": "cas", "Key": self.key("snapshots/latest"), "Value": value,
                           "Index": int(expected_index)}})
        headers = {"X-Consul-Token": self.c.token} if getattr(self.c, "token", None) else {}

        def outcome(resp) -> Tuple[bool, str]:
            if resp.code == 409:                    # a check failed: the transaction was rolled back
                try:
                    errs = json.loads(resp.body).get("Errors") or []
                except (ValueError, AttributeError):
                    errs = []
                return False, "; ".join(f"op {e.get('OpIndex')}: {e.get('What')}" for e in errs) or resp.body
            CB._status(resp, allow_404=False)
            return True, ""

        # py-consul's txn.put sends no ACL token, so the request is made here with ours.
        ok, why = self._call("snapshot publish", self.c.http.put, outcome, "/v1/txn", data=json.dumps(ops),
                             headers=headers)
        if not ok:
            log.debug("snapshot publish refused by Consul: %s", why)
        return ok

    def moved_aside_counts(self) -> Dict[str, Dict[str, Any]]:
        """Per node, what it last published under moved_aside/<node> (datadir.moved_aside_report)."""
        pre = self.key("moved_aside/")
        _, items = self._call("read moved_aside", self.c.kv.get, pre, recurse=True)
        out: Dict[str, Dict[str, Any]] = {}
        for it in items or []:
            val = self._decode(it)
            if isinstance(val, dict) and it.get("Key", "").startswith(pre):
                out[it["Key"][len(pre):]] = val
        return out

    def wait_latest_snapshot(self, index: int, wait: float) -> Tuple[Optional[SnapshotManifest], int]:
        new_index, item = self._call("snapshot watch", self.c.kv.get, self.key("snapshots/latest"),
                                     index=int(index) or None, wait=f"{max(1, int(wait))}s",
                                     )
        new_index = int(new_index or 0)
        if new_index < index:
            new_index = 0
        return self._manifest(item), new_index

    def acquire_lock(self, name: str, sid: str) -> bool:
        return bool(self._call(f"lock {name}", self.c.kv.put, self.key(f"locks/{name}"), self.node_name,
                               acquire=sid))

    def release_lock(self, name: str, sid: str) -> None:
        self._call(f"unlock {name}", self.c.kv.put, self.key(f"locks/{name}"), self.node_name, release=sid)

    def _manifest(self, item: Optional[Dict[str, Any]]) -> Optional[SnapshotManifest]:
        return parse_manifest(item.get("Key", self.key("snapshots/latest")), item.get("Value")) if item else None

