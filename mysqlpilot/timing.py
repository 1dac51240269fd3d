"""The timing of the protocol in one place: lease, heartbeat, fence deadline, hand-off age, and the rules
that keep them sound (docs/timing.md derives each).

- A session renew *sent* at t succeeded, so the session lived after t; however it ends, nobody may take
  the lock until lock_delay after that (Consul's lock-delay, and every candidate's own wait).
- So this node may be writable until t + lease, lease = lock_delay - fence_margin; fencing must be
  confirmed (or mysqld killed) by t + lease + fence_margin = t + lock_delay: the fence deadline is fixed
  when the lease is granted, however late the watchdog runs.
- Failsafe (failsafe.py): a member that promises, on receiving a request sent at t, not to take the lock for
  `promise` seconds keeps it off the lock until after t + promise. When every member that may take the lock
  promised, this node may stay writable until t + promise - fence_margin: the same arithmetic as a renew,
  with the promise in place of lock-delay.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

URGENT_FENCE = 0.5        # deadline of a fence when another node may already hold the lock


@dataclass(frozen=True)
class Timing:
    lock_delay: float = 2.0
    fence_margin: float = 0.5
    check_ttl: float = 2.0
    session_ttl: float = 10.0

    @classmethod
    def from_config(cls, cfg) -> "Timing":
        return cls(float(cfg.lock_delay), float(cfg.fence_margin), float(cfg.check_ttl), float(cfg.session_ttl))

    @property
    def lease(self) -> float:
        """Seconds after a successful renew was sent that this node may still be writable."""
        return self.lock_delay - self.fence_margin

    @property
    def heartbeat(self) -> float:
        """Seconds between heartbeats: four per lease, so one late or lost renew does not end it."""
        return max(0.2, min(1.0, self.lease / 4))

    def fence_deadline(self, lease_until: float) -> float:
        """When a fence of a lease that ends at `lease_until` must be done: the moment another node may
        take the lock. Fixed by the grant, never pushed back by a late watchdog."""
        return lease_until + self.fence_margin

    @property
    def promise(self) -> float:
        """Seconds a member promises not to take the lock (failsafe): lock-delay, so that a round of
        promises is worth exactly what a renew is (the lease)."""
        return self.lock_delay

    @property
    def failsafe_after(self) -> float:
        """The primary asks for promises once its last successful renew was sent this long ago: one
        renew late or lost, well before the lease ends (lease - failsafe_after is left for the round)."""
        return 1.5 * self.heartbeat

    @property
    def promise_timeout(self) -> float:
        """How long one promise request may take: a heartbeat, so a slow member costs a round, not the
        lease (the next round starts a heartbeat later)."""
        return self.heartbeat

    @property
    def handoff_max_age(self) -> float:
        """A hand-off marker older than this (by the writer's clock) is not trusted: candidates see a real
        one within a pass, and one restored from an old Consul state must not skip lock-delay."""
        return self.lock_delay + self.session_ttl

    def validate(self) -> None:
        """Refuse settings that break the proof, in one line naming the key."""
        if self.lease < 1:
            raise ConfigError(f"config key lock_delay ({self.lock_delay:g}s) must exceed fence_margin "
                              f"({self.fence_margin:g}s) by at least 1s: the primary's lease is the difference, and "
                              "a shorter one leaves no room for a renew; raise lock_delay or lower fence_margin")
        if self.check_ttl < 2 * self.heartbeat:
            raise ConfigError(f"config key check_ttl ({self.check_ttl:g}s) must be at least twice the heartbeat "
                              f"interval ({self.heartbeat:g}s, a quarter of the lease): one late beat would end the "
                              "session and cause a failover; raise check_ttl")
        if self.session_ttl < self.check_ttl:
            raise ConfigError(f"config key session_ttl ({self.session_ttl:g}s) must be at least check_ttl "
                              f"({self.check_ttl:g}s): the session TTL is the backstop when the check is lost")
