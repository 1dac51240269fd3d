"""How long a node's shutdown may take, in one place: pre-stop's hand-over, mysqld's clean shutdown,
and the limits ContainerPilot, Marathon and compose put around them.

    SIGTERM ─► pre-stop: fence, target catches up (HANDOVER_CATCHUP), wait for the new primary
               (PRE_STOP_WAIT)                      ≤ PRE_STOP_BUDGET  (the service job's stopTimeout)
            ─► mysqld: clean shutdown                ≤ MYSQLD_SHUTDOWN
            ─► ContainerPilot SIGKILLs what is left CP_STOP_TIMEOUT (top-level stopTimeout) after every
               job has finished stopping, i.e. after mysqld got its SIGTERM (seen with the real binary).
               ContainerPilot 3.8 often halts preStop at once (see stopguard.py): then that moment is
               right after the SIGTERM, so CP_STOP_TIMEOUT alone must cover pre-stop and mysqld.
            ─► Marathon/Docker SIGKILL the container after their own grace period, which must outlast
               ContainerPilot's latest kill: PRE_STOP_BUDGET + CP_STOP_TIMEOUT.

docker/containerpilot.json5 holds the ContainerPilot values; tests/unit/test_containerpilot_real.py reads
them back through the real ContainerPilot and checks them against these.
"""

HANDOVER_CATCHUP = 30.0      # a switchover target must apply the fenced primary's GTID set within this
PRE_STOP_WAIT = 60.0         # pre-stop then waits this long for the target to take the leader key
FENCE_ALLOWANCE = 10.0       # fencing, Consul round trips and interpreter start-up of the hook
PRE_STOP_BUDGET = 120.0      # the service job's stopTimeout: how long ContainerPilot waits for preStop
MYSQLD_SHUTDOWN = 60.0       # InnoDB's clean shutdown after SIGTERM
CP_STOP_TIMEOUT = 180        # top-level stopTimeout (seconds): then ContainerPilot SIGKILLs everything
PLATFORM_GRACE = 310         # Marathon taskKillGracePeriodSeconds / compose stop_grace_period

assert HANDOVER_CATCHUP + PRE_STOP_WAIT + FENCE_ALLOWANCE <= PRE_STOP_BUDGET
assert PRE_STOP_BUDGET + MYSQLD_SHUTDOWN <= CP_STOP_TIMEOUT
assert PRE_STOP_BUDGET + CP_STOP_TIMEOUT < PLATFORM_GRACE
