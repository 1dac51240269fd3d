"""Snapshot retention (issue 22) on the real store and Consul: `mysqlpilot snapshot prune` against
SeaweedFS (S3) reads snapshots/latest from a real Consul 1.8.7, says what it would remove with --dry-run,
removes exactly that, and leaves another cluster's objects in the same bucket alone."""
import subprocess
import sys

import pytest

from mysqlpilot.model import SnapshotManifest
from mysqlpilot.snapshot_catalog import snapshot_dir
from mysqlpilot.store.s3 import S3Store
from tests.harness.consul_server import make_dcs

pytestmark = pytest.mark.integration


def snap(store, cluster, sid, created):
    base = snapshot_dir(cluster, sid)
    m = SnapshotManifest(sid, created, "n1", f"{base}/data.xbstream.zst", 3, 3, "0" * 64, "mariadb", "10.11",
                         "0-1-5", cluster=cluster)
    store.put_bytes(f"{base}/data.xbstream.zst", b"abc")
    store.put_bytes(f"{base}/manifest.json", m.to_json().encode())
    return m


def test_prune_on_seaweedfs_keeps_latest_and_the_newest_and_nothing_of_another_cluster(
        consul_agent, consul_kv_root, s3_server, s3_bucket):
    prefix, cluster = consul_kv_root.rsplit("/", 1)
    store = S3Store(s3_bucket, "pfx", s3_server.endpoint, "us-east-1", s3_server.access_key, s3_server.secret_key)
    ms = [snap(store, cluster, f"s{i}", 1000.0 - 60 * i) for i in range(5)]
    snap(store, "other", "o1", 1.0)
    store.delete(f"{snapshot_dir(cluster, 'nope')}/manifest.json")     # a missing object: not an error
    make_dcs(consul_agent, consul_kv_root, "op").set_latest_snapshot(ms[1].__dict__.copy())
    env = {"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "y", "MYSQLPILOT_NODE": "op", "PATH": "/usr/bin:/bin",
           "CONSUL": f"127.0.0.1:{consul_agent.http_port}", "MYSQLPILOT_CONSUL_PREFIX": prefix,
           "MYSQLPILOT_CLUSTER": cluster, "MYSQLPILOT_STORE": "s3", "MYSQLPILOT_S3_BUCKET": s3_bucket,
           "MYSQLPILOT_S3_PREFIX": "pfx", "MYSQLPILOT_S3_ENDPOINT": s3_server.endpoint,
           "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
           "MYSQLPILOT_SNAPSHOT_KEEP": "2"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mysqlpilot", "snapshot", "prune", *args], env=env,
                              capture_output=True, text=True, timeout=60)
    before = store.list("")
    p = cli("--dry-run")
    assert p.returncode == 0, p.stderr
    assert "would remove snapshot s2" in p.stdout and "would remove snapshot s4" in p.stdout
    assert "keep snapshot s1 (Consul's snapshots/latest" in p.stdout and "dry run: 3 of 5" in p.stdout
    assert store.list("") == before
    p = cli()
    assert p.returncode == 0, p.stderr
    assert "3 of 5 snapshots removed" in p.stdout
    left = store.list("")
    assert {k.split("/")[3] for k in left if k.startswith(f"clusters/{cluster}/")} == {"s0", "s1"}
    assert [k for k in left if k.startswith("clusters/other/")] == [k for k in before if k.startswith("clusters/other/")]
    assert s3_server.access_key not in p.stdout + p.stderr and s3_server.secret_key not in p.stdout + p.stderr
