#!/usr/bin/env python3
"""Binlog archive and point-in-time restore benchmark (issue 22), on one real server and SeaweedFS:

  archive lag   each commit of a steady writer (its GTID and the moment the INSERT returned) against the
                moment a poller of the store first sees that GTID in a segment manifest: the archive's
                recovery point. Floor, in the same run: one small PUT and one listing of the store.
  restore       `restore --to-gtid` (the snapshot, then the archived writes replayed) against restoring
                the same snapshot alone and starting it, on the same data.

    python3 bench/pitr.py --mb 1000 --seconds 60
    python3 bench/pitr.py --flavor mysql --mb 1000
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.bootstrap import PAYLOAD, fill  # noqa: E402
from mysqlpilot import gtid as gtidlib, mysqld  # noqa: E402
from mysqlpilot.binlog_archiver import Archiver  # noqa: E402
from mysqlpilot.binlog_catalog import Segment, archive_prefix  # noqa: E402
from mysqlpilot.pitr_plan import Target  # noqa: E402
from mysqlpilot.pitr_restore import restore_to_point  # noqa: E402
from mysqlpilot.snapshot import restore_snapshot, take_snapshot  # noqa: E402
from tests.harness.mariadb_server import Instance, flavor_env, flavor_unavailable  # noqa: E402
from tests.harness.s3_server import S3Server, bucket_store  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


class Poller(threading.Thread):
    """Lists the archive every 50 ms and notes when each GTID first appears in a segment manifest."""

    def __init__(self, store, cluster):
        super().__init__(daemon=True)
        self.store, self.prefix = store, archive_prefix(cluster) + "/"
        self.seen, self.keys, self.stop = {}, set(), threading.Event()

    def run(self):
        import json
        while not self.stop.is_set():
            for k in self.store.list(self.prefix):
                if k.endswith(".json") and not k.endswith("run.json") and k not in self.keys:
                    now = time.time()
                    self.keys.add(k)
                    for g, _o, _t in Segment(**json.loads(self.store.get_bytes(k))).txns:
                        self.seen.setdefault(g, now)
            self.stop.wait(0.05)


def last_gtid(srv, flavor, uuid):
    if flavor.dialect == "mariadb":
        return str(srv.scalar("SELECT @@last_gtid"))
    ivs = gtidlib.parse_mysql(srv.gtid_executed()).get(uuid, [])
    return f"{uuid}:{ivs[-1][1]}"


def last_gtid_now(srv, flavor, uuid):
    if flavor.dialect == "mariadb":
        return str(srv.scalar("SELECT @@gtid_binlog_pos"))
    return last_gtid(srv, flavor, uuid)


def main() -> int:
    ap = argparse.ArgumentParser(description="binlog archive and point-in-time restore benchmark")
    ap.add_argument("--mb", type=int, default=1000, help="data size in MB before the writes")
    ap.add_argument("--seconds", type=float, default=60, help="how long the steady writer runs")
    ap.add_argument("--rate", type=float, default=50, help="commits per second")
    ap.add_argument("--data", default="realistic", choices=sorted(PAYLOAD))
    ap.add_argument("--flavor", default="mariadb", choices=("mariadb", "mysql"))
    args = ap.parse_args()
    why = flavor_unavailable(args.flavor)
    if why:
        print(f"bench/pitr.py: cannot run {args.flavor}: {why}", file=sys.stderr)
        return 2
    base = tempfile.mkdtemp(prefix="mysqlpilot-bench-pitr-")
    s3 = S3Server(os.path.join(base, "s3"))
    os.makedirs(s3.base)
    src = None
    try:
        store = bucket_store(s3.start(), "bench", "p")
        src = Instance("pitrsrc", "127.0.1.212", os.path.join(base, "src"),
                       dict(flavor_env(args.flavor), MYSQLPILOT_INNODB_BUFFER_POOL_SIZE="256M")).setup()
        tools = {}
        if args.flavor == "mysql":
            tools = {"binlog_tool": os.path.join(REPO, "scripts", "mysqlbinlog-sid"),
                     "client_tool": os.path.join(REPO, "scripts", "mysql-sid")}
        cfg = src.cfg.with_overrides(archive=True, archive_interval=1.0, **tools)
        print(f"[{args.mb} MB] generating {args.data} data ...", flush=True)
        fill(src, args.mb, args.data)
        t0 = time.monotonic()
        m = take_snapshot(cfg, src.flavor, store, password=cfg.root_password)
        print(f"snapshot {m.raw_bytes / 1e6:.0f} MB -> {m.bytes / 1e6:.0f} MB stored "
              f"({m.raw_bytes / m.bytes:.1f}x) in {time.monotonic() - t0:.1f}s", flush=True)

        adm = src.admin()
        uuid = "" if src.flavor.dialect == "mariadb" else str(adm.scalar("SELECT @@server_uuid"))
        adm.execute(["CREATE TABLE IF NOT EXISTS bench.w (id BIGINT PRIMARY KEY, at DOUBLE, b VARCHAR(1000))"])
        stop = threading.Event()
        arch = Archiver(cfg, src.flavor, store, lambda: src.admin(), am_primary=lambda: True)
        at = threading.Thread(target=arch.loop, args=(stop,), daemon=True)
        at.start()
        poll = Poller(store, cfg.cluster)
        poll.start()
        # The run's first upload is the fill's binlogs: timed apart, not as commit lag.
        t0, backlog = time.monotonic(), last_gtid_now(adm, src.flavor, uuid)
        while backlog not in poll.seen:
            time.sleep(0.1)
        t_backlog, backlog_mb = time.monotonic() - t0, arch.run.uploaded / 1e6
        print(f"the fill's binlogs archived in {t_backlog:.1f}s ({backlog_mb:.0f} MB)", flush=True)
        acks = []
        print(f"steady writer: {args.rate:.0f} commits/s for {args.seconds:.0f}s ...", flush=True)
        end = time.monotonic() + args.seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            adm.execute(f"INSERT INTO bench.w VALUES ({i}, {time.time()}, {PAYLOAD[args.data].format(seq=i)})")
            acks.append((last_gtid(adm, src.flavor, uuid), time.time()))
            time.sleep(max(0.0, 1 / args.rate - 0.002))
        final = acks[-1][0]
        deadline = time.time() + 60
        while final not in poll.seen and time.time() < deadline:
            time.sleep(0.1)
        poll.stop.set()
        poll.join(5)
        stop.set()
        at.join(30)
        lags = [poll.seen[g] - t for g, t in acks if g in poll.seen]
        missing = len(acks) - len(lags)
        puts, lists = [], []
        for k in range(50):
            t = time.time()
            store.put_bytes(f"floor/{k}", b"x" * 4096)
            puts.append(time.time() - t)
            t = time.time()
            store.list(archive_prefix(cfg.cluster) + "/")
            lists.append(time.time() - t)

        print("restoring the snapshot alone ...", flush=True)
        t0 = time.monotonic()
        rcfg = cfg.with_overrides(datadir=os.path.join(base, "snaponly", "data"), state_dir=os.path.join(base, "snaponly"),
                                  socket=os.path.join(base, "snaponly", "m.sock"),
                                  mycnf=os.path.join(base, "snaponly", "my.cnf"), port=cfg.port + 1)
        os.makedirs(rcfg.state_dir)
        restore_snapshot(rcfg, src.flavor, store, m, datadir=rcfg.datadir, mysqld_user=rcfg.mysqld_user)
        mysqld.write_mycnf(rcfg, src.flavor)
        proc = mysqld.start_mysqld(rcfg, src.flavor)
        mysqld.wait_ready(rcfg, 600, proc)
        mysqld.stop_mysqld(rcfg)
        t_snap = time.monotonic() - t0
        print(f"restoring to GTID {final} ...", flush=True)
        res = restore_to_point(cfg, src.flavor, store, Target(gtid=final), os.path.join(base, "pitr", "data"),
                               echo=lambda line: print("  " + line, flush=True))
    finally:
        if src is not None:
            src.teardown()
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"binlog archive on this machine: {args.flavor} {src.flavor.version}, archive_interval 1.0 s, "
          f"SeaweedFS on loopback, {len(acks)} commits at {len(acks) / args.seconds:.0f}/s")
    print(f"(before the writer: the fill's {backlog_mb:.0f} MB of binlogs took "
          f"{t_backlog:.1f}s to archive, not counted below)")
    print(f"{'':<36} {'p50':>7} {'p99':>7} {'max':>7}")
    print(f"{'commit -> seen in the store':<36} {pct(lags, 50):>6.2f}s {pct(lags, 99):>6.2f}s {max(lags):>6.2f}s"
          + (f"   ({missing} never seen)" if missing else ""))
    print(f"{'floor: one 4 KB PUT':<36} {pct(puts, 50):>6.3f}s {pct(puts, 99):>6.3f}s {max(puts):>6.3f}s")
    print(f"{'floor: one listing of the archive':<36} {pct(lists, 50):>6.3f}s {pct(lists, 99):>6.3f}s "
          f"{max(lists):>6.3f}s")
    print()
    print(f"restore at {args.mb} MB of {args.data} data (snapshot {m.raw_bytes / 1e6:.0f} MB, stored "
          f"{m.bytes / 1e6:.0f} MB, {m.raw_bytes / m.bytes:.1f}x)")
    print(f"{'snapshot alone (restore, start)':<44} {t_snap:>7.1f}s")
    print(f"{'to a point (+ ' + str(res.txns) + ' archived commits)':<44} {res.seconds:>7.1f}s "
          f"({res.seconds / t_snap:.2f}x)")
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
