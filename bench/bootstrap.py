#!/usr/bin/env python3
"""Replica bootstrap benchmark: time-to-ready against data size, with snapshot and restore throughput,
beside two baselines measured in the same run on the same data:

  mysqlpilot   mariadb-backup | zstd | S3 multipart  ->  download | zstd -d | mbstream, prepare,
               start, seed GTID, replicate until caught up
               (--flavor mysql: CLONE LOCAL | tar | zstd | S3  ->  download | zstd -d | tar -x, start, ...)
  remote CLONE (--flavor mysql) CLONE INSTANCE FROM the replica just restored, as a new replica is seeded
               (mysqlpilot/clone_seed.py), start, replicate from the source until caught up
  dump         mariadb-dump --single-transaction --gtid | mariadb  into a fresh instance
               (--flavor mysql: mysqldump --single-transaction --set-gtid-purged=ON | mysql, MySQL 9.7's own)
  raw pipe     the same number of bytes through the same zstd and the same S3 upload and download,
               no backup tool: the ceiling for the pipeline

    python3 bench/bootstrap.py --sizes 100,1000
    python3 bench/bootstrap.py --flavor mysql --sizes 1000
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mysqlpilot import mysqld  # noqa: E402
from mysqlpilot.clone_seed import clone_from  # noqa: E402
from mysqlpilot.model import MemberState  # noqa: E402
from mysqlpilot.snapshot import restore_snapshot, snapshot_method, take_snapshot  # noqa: E402
from mysqlpilot.store.base import part_size_for  # noqa: E402
from tests.harness.mariadb_server import Instance, flavor_env, flavor_unavailable, mysql_root  # noqa: E402
from tests.harness.s3_server import S3Server, bucket_store  # noqa: E402

ROW = 1000          # bytes of payload per row


# The payload column b. "repetitive": one hash repeated, which zstd shrinks about 19x and flatters every
# figure; "realistic": six distinct 512-bit hashes in hex plus a little repeated prose, about 3x, like tables
# of ids, tokens and text (issue 22).
PAYLOAD = {
    "repetitive": "REPEAT(SHA2({seq}, 256), 12)",
    "realistic": "CONCAT(" + ", ".join(f"SHA2({{seq}} * 7 + {k}, 512)" for k in range(6))
                 + ", REPEAT('lorem ipsum dolor sit amet ', 8))",
}


def fill(inst: Instance, mb: int, data: str = "repetitive") -> None:
    adm = inst.admin()
    adm.set_read_only(False)
    adm.execute(["CREATE DATABASE IF NOT EXISTS bench",
                 "CREATE TABLE bench.t (id BIGINT PRIMARY KEY, a CHAR(200), b VARCHAR(1000)) ENGINE=InnoDB"])
    rows = mb * 1_000_000 // ROW
    batch = 2000
    if inst.flavor.dialect == "mysql":
        adm.execute(["USE bench", f"SET SESSION cte_max_recursion_depth = {batch + 1}"])
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        if inst.flavor.dialect == "mysql":      # no SEQUENCE engine (a recursive CTE makes the ids), no MD5()
            adm.execute(f"INSERT INTO bench.t WITH RECURSIVE s (seq) AS (SELECT {start + 1} UNION ALL SELECT "
                        f"seq + 1 FROM s WHERE seq < {start + n}) SELECT seq, LEFT(SHA2(seq, 224), 32), "
                        f"{PAYLOAD[data].format(seq='seq')} FROM s")
        else:
            adm.execute(f"INSERT INTO bench.t SELECT seq, MD5(seq), {PAYLOAD[data].format(seq='seq')} FROM "
                        f"bench.seq_{start + 1}_to_{start + n}")
    adm.close()


MADE = []          # every instance started, torn down at exit even when a step fails


FLAVOR = "mariadb"     # --flavor


def new_instance(base: str, name: str, host: str) -> Instance:
    inst = Instance(name, host, os.path.join(base, name),
                    dict(flavor_env(FLAVOR), MYSQLPILOT_INNODB_BUFFER_POOL_SIZE="256M"))
    MADE.append(inst)
    return inst


def replicate_until_caught_up(src: Instance, rep: Instance, seed: str) -> None:
    adm = rep.admin()
    if seed:
        adm.seed_gtid(seed)
    adm.change_source(src.host, src.port, src.cfg.repl_user, src.cfg.repl_password)
    adm.start_replica()
    gtid = src.admin().gtid_executed()
    assert adm.wait_for_gtid(gtid, 600), "replica did not catch up"
    adm.close()


def replica_ready(src: Instance, base: str, store, manifest, tag: str) -> tuple:
    """Restore the snapshot into a fresh node, start it, seed, replicate, wait until caught up. Returns
    the time and the running replica (a donor for the remote CLONE)."""
    t0 = time.monotonic()
    rep = new_instance(base, f"rep{tag}", "127.0.1.212")
    restore_snapshot(rep.cfg, rep.flavor, store, manifest, datadir=rep.cfg.datadir, mysqld_user="root")
    rep.start()
    replicate_until_caught_up(src, rep, manifest.gtid)
    return time.monotonic() - t0, rep


def clone_ready(src: Instance, donor: Instance, base: str, tag: str) -> float:
    """A fresh node seeded as mysqlpilot seeds one by remote CLONE (clone_seed.clone_from: throwaway
    recipient, CLONE INSTANCE FROM the donor replica, copy renamed into place), started, replicating from
    the source until caught up."""
    t0 = time.monotonic()
    rep = new_instance(base, f"clone{tag}", "127.0.1.214")
    mysqld.write_mycnf(rep.cfg, rep.flavor)
    d = MemberState(name=donor.name, host=donor.host, port=donor.port, role="replica", healthy=True)
    gtid = clone_from(rep.cfg, rep.flavor, d, datadir=rep.cfg.datadir, user=rep.cfg.repl_user,
                      password=rep.cfg.repl_password)
    rep.start()
    replicate_until_caught_up(src, rep, gtid)
    took = time.monotonic() - t0
    rep.teardown()
    return took


def client_tools(flavor) -> tuple:
    """(dump argv, load argv, where the defaults file goes, how the tools see it) for the flavor's own
    client tools. MySQL 9.7's run in the sid root (built against sid's libc), over TCP."""
    if flavor.dialect == "mysql":
        root = mysql_root()
        return (["chroot", root, "/usr/bin/mysqldump"], ["chroot", root, "/usr/bin/mysql"],
                os.path.join(root, "tmp"), lambda path: path[len(root):])
    return ["mariadb-dump"], ["mariadb"], None, lambda path: path


def dump_baseline(src: Instance, base: str, tag: str) -> tuple:
    dst = new_instance(base, f"dumpdst{tag}", "127.0.1.213").setup()
    dump_cmd, load_cmd, cnf_dir, seen = client_tools(src.flavor)
    gtid_opt = "--set-gtid-purged=ON" if src.flavor.dialect == "mysql" else "--gtid"
    t0 = time.monotonic()
    def where(inst: Instance) -> dict:       # the chroot'ed tools cannot see the host's socket
        return dict(host=inst.host, port=inst.port) if cnf_dir else dict(socket=inst.cfg.socket)
    with mysqld.client_defaults_file("root", src.cfg.root_password, dir=cnf_dir, **where(src)) as sf, \
            mysqld.client_defaults_file("root", dst.cfg.root_password, dir=cnf_dir, **where(dst)) as df:
        dst.admin().set_read_only(False)
        dump = subprocess.Popen([*dump_cmd, f"--defaults-extra-file={seen(sf)}", "--single-transaction", gtid_opt,
                                 "--databases", "bench"], stdout=subprocess.PIPE)
        load = subprocess.run([*load_cmd, f"--defaults-extra-file={seen(df)}"], stdin=dump.stdout)
        dump.wait()
    took = time.monotonic() - t0
    assert load.returncode == 0 and dump.returncode == 0, "dump | mysql failed"
    n = dst.admin().scalar("SELECT COUNT(*) FROM bench.t")
    dst.teardown()
    return took, int(n)


def raw_pipe(store, datadir: str, nbytes: int, level: int) -> tuple:
    """The datadir's own bytes (as much as the backup streamed) through the same zstd and the same store,
    up and down, with no backup tool: the ceiling of the pipeline."""
    key = f"raw/{int(time.time())}.zst"
    up = store.begin_upload(key, part_size_for(nbytes))
    t0 = time.monotonic()
    gen = subprocess.Popen(["sh", "-c", 'tar -cf - -C "$1" . 2>/dev/null | head -c "$2"', "sh", datadir,
                            str(nbytes)], stdout=subprocess.PIPE)
    z = subprocess.Popen(["zstd", f"-{level}", "-T0", "-q", "-c"], stdin=gen.stdout, stdout=subprocess.PIPE)
    sha = hashlib.sha256()
    for chunk in iter(lambda: z.stdout.read(1 << 20), b""):
        sha.update(chunk)
        up.write(chunk)
    gen.wait()
    z.wait()
    up.complete()
    t_up = time.monotonic() - t0
    t0 = time.monotonic()
    src = store.open_read(key)
    d = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    for chunk in iter(lambda: src.read(1 << 20), b""):
        sha.update(chunk)
        d.stdin.write(chunk)
    d.stdin.close()
    d.wait()
    return t_up, time.monotonic() - t0


def main() -> int:
    global FLAVOR
    ap = argparse.ArgumentParser(description="replica bootstrap benchmark")
    ap.add_argument("--sizes", default="100,1000", help="data sizes in MB")
    ap.add_argument("--flavor", default="mariadb", choices=("mariadb", "mysql"),
                    help="server: MariaDB 10.11, or MySQL 9.7 from the sid root (scripts/install-deps.sh)")
    ap.add_argument("--data", default="realistic", choices=sorted(PAYLOAD),
                    help="payload: realistic (zstd about 3x, like real tables) or repetitive (about 19x)")
    args = ap.parse_args()
    FLAVOR = args.flavor
    why = flavor_unavailable(FLAVOR)
    if why:
        print(f"bench/bootstrap.py: cannot run {FLAVOR}: {why}", file=sys.stderr)
        return 2
    base = tempfile.mkdtemp(prefix="mysqlpilot-bench-boot-")
    s3 = S3Server(os.path.join(base, "s3"))
    os.makedirs(s3.base)
    rows = []
    method = version = ""
    try:
        store = bucket_store(s3.start(), "bench", "b")
        for mb in [int(x) for x in args.sizes.split(",") if x]:
            src = new_instance(base, f"src{mb}", "127.0.1.211").setup()
            method, version = snapshot_method(src.cfg, src.flavor), src.flavor.version
            print(f"[{mb} MB] generating data ...", flush=True)
            fill(src, mb, args.data)
            t0 = time.monotonic()
            m = take_snapshot(src.cfg, src.flavor, store, password=src.cfg.root_password)
            t_snap = time.monotonic() - t0
            t_ready, rep = replica_ready(src, base, store, m, str(mb))
            print(f"[{mb} MB] snapshot {t_snap:.1f}s, replica ready {t_ready:.1f}s", flush=True)
            t_clone = None
            if src.flavor.supports_clone:
                t_clone = clone_ready(src, rep, base, str(mb))
                print(f"[{mb} MB] replica ready by remote CLONE {t_clone:.1f}s", flush=True)
            rep.teardown()
            print(f"[{mb} MB] dump baseline ...", flush=True)
            t_dump, n = dump_baseline(src, base, str(mb))
            t_rup, t_rdown = raw_pipe(store, src.cfg.datadir, m.raw_bytes, src.cfg.compression_level)
            raw = m.raw_bytes / 1e6
            rows.append((mb, raw, m.bytes / 1e6, t_snap, t_ready, t_clone, t_dump, t_rup, t_rdown))
            src.teardown()
            for d in (f"src{mb}", f"rep{mb}", f"clone{mb}", f"dumpdst{mb}"):
                shutil.rmtree(os.path.join(base, d), ignore_errors=True)
    finally:
        for inst in MADE:
            try:
                inst.teardown()
            except Exception:  # noqa: BLE001 - best effort: already stopped
                pass
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"replica bootstrap on this machine, {FLAVOR} {version}, snapshot method {method}, {args.data} data "
          "(MB = 10^6 bytes of the snapshot stream; S3 = SeaweedFS on loopback)")
    hdr = (f"{'data':>6} {'stream':>8} {'stored':>8} | {'snapshot':>9} {'MB/s':>6} | {'ready (store)':>13} "
           f"{'MB/s':>6} | {'ready (CLONE)':>13} | {'dump|mysql':>10} | {'raw up':>7} {'MB/s':>6} "
           f"{'raw down':>8} {'MB/s':>6}")
    print(hdr)
    print("-" * len(hdr))
    for mb, raw, stored, ts, tr, tc, td, tu, tdn in rows:
        clone = f"{tc:>12.1f}s" if tc is not None else f"{'-':>13}"
        print(f"{mb:>4}MB {raw:>7.0f}M {stored:>7.0f}M | {ts:>8.1f}s {raw / ts:>6.0f} | {tr:>12.1f}s "
              f"{raw / tr:>6.0f} | {clone} | {td:>9.1f}s | {tu:>6.1f}s {raw / tu:>6.0f} {tdn:>7.1f}s "
              f"{raw / tdn:>6.0f}")
    for mb, raw, stored, ts, tr, tc, td, tu, tdn in rows:
        print(f"{mb} MB: replica ready from the store {td / tr:.1f}x faster than dump|mysql; snapshot at "
              f"{tu / ts * 100:.0f}% and restore path at {tdn / tr * 100:.0f}% of the raw pipe's speed")
        if tc is not None:
            print(f"{mb} MB: replica ready by remote CLONE in {tc / tr:.2f}x the time from the store, "
                  f"{tc / td:.2f}x the time of dump|mysql")
    return 0


if __name__ == "__main__":
    sys.exit(main())
