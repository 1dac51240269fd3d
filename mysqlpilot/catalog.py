"""This node's entries in Consul's catalog: what clients using Consul DNS or the health API find.

- `<service>-pilot` (id `<service>-pilot-<node>`) carries the node's liveness check, the one its Consul
  session is bound to. It belongs to that service, not to the node: a node-level check that fails hides
  every service of the agent's node, so one dead node of an agent shared by several hid them all.
- `<service>-primary` and `<service>-replica` (ids `...-<node>`), one of each per node, each with an HTTP
  check on this node's API (`/primary`; `/replica?lag=<max_replica_lag>`). An entry passes exactly while
  the API says so: the lock holder under a valid lease with mysqld writable; a healthy replica of it. A
  dead node's checks fail within one interval whether or not its Consul agent lives. Consul drops an
  entry critical for DEREGISTER_AFTER; the loop registers it again within REFRESH.
- Without the node API (api_port 0) the primary entry has no check: it is registered when this node
  promotes and removed when it fences (a SIGKILLed primary stays listed; docs/routing.md says so).
"""
from __future__ import annotations

import logging
import time
from typing import Optional

from .dcs.base import ServiceCheck
from .errors import PilotError

log = logging.getLogger(__name__)

REFRESH = 30.0              # seconds between re-registrations of the role entries (status is kept)
CHECK_INTERVAL = 1.0        # the agent's HTTP checks of /primary and /replica
CHECK_TIMEOUT = 1.0
DEREGISTER_AFTER = 300.0    # a node gone for good leaves the catalog after this


class Catalog:
    def __init__(self, node):
        self.n = node
        self._refreshed: Optional[float] = None

    @property
    def _svc(self) -> str:
        return self.n.cfg.service_name

    def entry_id(self, role: str) -> str:
        """role: pilot | primary | replica."""
        return f"{self._svc}-{role}-{self.n.cfg.node_name}"

    def register_liveness(self) -> None:
        """The liveness check the session is bound to, under this node's own `<service>-pilot` entry."""
        cfg = self.n.cfg
        self.n.dcs.register_service(f"{self._svc}-pilot", self.entry_id("pilot"), cfg.advertise_host, cfg.port,
                                    tags=(cfg.node_name,))
        self.n.dcs.register_check(cfg.liveness_check_id, f"mysqlpilot liveness of {cfg.node_name}",
                                  cfg.check_ttl, service_id=self.entry_id("pilot"))

    def refresh(self, force: bool = False) -> None:
        """With the node API: (re-)register both role entries, every REFRESH seconds or when forced."""
        api = self.n.cfg.api_advertised
        if not api or (not force and self._refreshed is not None
                       and time.monotonic() - self._refreshed < REFRESH):
            return
        cfg = self.n.cfg
        lag = f"{cfg.max_replica_lag:g}"
        try:
            for role, path in (("primary", "/primary"), ("replica", f"/replica?lag={lag}")):
                check = ServiceCheck(http=f"http://{api}{path}", interval=CHECK_INTERVAL, timeout=CHECK_TIMEOUT,
                                     deregister_after=DEREGISTER_AFTER)
                self.n.dcs.register_service(f"{self._svc}-{role}", self.entry_id(role), cfg.advertise_host, cfg.port,
                                            tags=(role, cfg.node_name), check=check)
            self._refreshed = time.monotonic()
        except PilotError as exc:
            self.n.say_once("catalog", f"could not register {self._svc}-primary/-replica: {exc}")

    def promoted(self) -> None:
        """This node just became (or stays) the writable primary."""
        if self.n.cfg.api_advertised:
            self.refresh(force=self._refreshed is None)
            return
        try:
            self.n.dcs.register_service(f"{self._svc}-primary", self.entry_id("primary"), self.n.cfg.advertise_host,
                                        self.n.cfg.port, tags=("primary", self.n.cfg.node_name))
        except PilotError as exc:
            log.warning("could not register %s-primary: %s", self._svc, exc)

    def fenced(self) -> None:
        """Out of the primary entry at once, not at the next failed check (it comes back, critical, at the
        next refresh)."""
        try:
            self.n.dcs.deregister_service(self.entry_id("primary"))
        except PilotError:
            pass
        self._refreshed = None if self.n.cfg.api_advertised else self._refreshed
