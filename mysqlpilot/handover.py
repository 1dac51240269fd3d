"""A planned switchover from this primary: fence (confirmed), let the target catch up, release with the
hand-off marker. Used by the loop (a request) and by pre-stop."""
from __future__ import annotations

import logging
import time
from typing import Optional

from .actions import MIN_LEASE_TO_PROMOTE
from .dcs.base import REQUEST_KEY
from .dcs.base import ClusterView, Release, Request
from .errors import PilotError
from .timeouts import HANDOVER_CATCHUP

log = logging.getLogger(__name__)


class HandOver:
    def __init__(self, node):
        self.n = node

    def hand_over(self, target: str, req: Optional[Request], view: ClusterView) -> bool:
        """Planned switchover from this primary: fence (confirmed), let the target catch up, release."""
        tm = view.member(target)
        if tm is None or not tm.alive or not tm.host:
            # Without a session its key's host is unvouched for, and an unreadable key names none: no login
            # there, no fence for nothing.
            log.error("switchover target %s is %s; ignoring the request: start its mysqlpilot and ask again",
                      target, "not a member" if tm is None else "without a live Consul session" if not tm.alive
                      else "a member whose key is unreadable")
            self.n.dcs.put_json(REQUEST_KEY, None)
            return False
        t_fence = time.time()
        sid = self.n.sid or ""             # the session the lock is held under; only it may turn writable again
        fenced = self.n.fence(f"switchover to {target}", keep_lease=True)
        if fenced != "read-only":
            # mysqld is gone: the session ends with it and the election takes over, lock-delay included.
            log.error("switchover to %s aborted: fencing ended with %s; not releasing the lock", target, fenced)
            self.n.dcs.put_json(REQUEST_KEY, None)
            return False
        srv = self.n.local()
        gtid = srv.gtid_executed()
        srv.close()
        t0 = time.monotonic()
        try:
            tsrv = self.n.remote(tm.host, tm.port)
            caught_up = tsrv.wait_for_gtid(gtid, timeout=HANDOVER_CATCHUP) if gtid else True
            tsrv.close()
        except PilotError as exc:
            caught_up, gtid = False, f"{gtid} ({exc})"
        if not caught_up:
            log.error("switchover to %s aborted after %.1fs: it did not apply %s; staying primary", target,
                      time.monotonic() - t0, gtid)
            self.n.dcs.put_json(REQUEST_KEY, None)
            self.writable_again_after_abort(sid)
            return False
        marker = Release(name=self.n.cfg.node_name, reason=(req.reason if req else "") or f"switchover to {target}",
                         at=time.time(), gtid_executed=gtid, lock_index=view.lock_index, to=target,
                         kind=req.kind if req else "switchover", fenced_at=t_fence)
        if not self.n.dcs.release_leader(sid, marker):
            log.error("switchover to %s: the leader lock was no longer ours to release (session %s ended); "
                      "staying read-only, the election decides", target, sid[:8])
            return False
        log.warning("handed the leader lock to %s at GTID %s", target, gtid or "-")
        # Follow the target now, while it promotes: with semi-sync its first commit waits for a replica's
        # ACK, and this node is the one that can give it soonest. The errant check is done: the target
        # confirmed it applied everything this node has. Until it is promoted nothing is written there.
        try:
            self.n.actions.replicate_from(target, tm.host, tm.port)
        except PilotError as exc:
            log.info("following %s at once did not work (%s); the next pass will", target, exc)
        return True

    def writable_again_after_abort(self, sid: str) -> None:
        """A switchover was aborted after the fence: writable again only if the lock is still held under the
        session the lease belongs to. During the wait the session may have ended (`failover --force`, a
        Consul blip) and the heartbeat opened a new one with a fresh lease while another node took over."""
        try:
            leader = self.n.dcs.get_cluster().leader
        except PilotError as exc:
            log.error("switchover aborted; cannot read the leader lock (%s): staying read-only", exc)
            return
        if not (sid and self.n.sid == sid and leader is not None and leader.session == sid):
            log.error("switchover aborted and the lock is no longer held under session %s: staying read-only; "
                      "the election decides", sid[:8] or "-")
            return
        if not leader.promoted:
            # The lock was taken but the promotion never ran (a request was handled first): writable now, it
            # would be a primary the key never calls promoted, which replicas wait on for good.
            log.error("switchover aborted before this node finished its own promotion: staying read-only; the "
                      "next pass promotes it")
            return
        if self.n.lease.left(sid) <= MIN_LEASE_TO_PROMOTE:
            log.error("switchover aborted with %.2fs of lease left: staying read-only until the next pass",
                      self.n.lease.left(sid))
            return
        self.n.lease.mark_writer(sid)          # the fencer trusts read-only answers only since this mark
        srv = self.n.local()
        try:
            srv.set_read_only(False)
        finally:
            srv.close()
        self.n.events.serving()                # writable primary again: no longer fenced
