#!/usr/bin/env python3
"""S3 multipart upload: parts one at a time against several in flight (config key s3_upload_concurrency),
the same bytes (incompressible, as a zstd stream is) to SeaweedFS on loopback, in one run.

    python3 bench/upload.py --mb 400 --concurrency 1,2,4,8
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mysqlpilot.store.base import MIB  # noqa: E402
from mysqlpilot.store.s3 import S3Store  # noqa: E402
from tests.harness.s3_server import S3Server  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description="S3 multipart upload concurrency benchmark")
    ap.add_argument("--mb", type=int, default=400)
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="mysqlpilot-bench-upload-")
    s3 = S3Server(os.path.join(base, "s3"))
    os.makedirs(s3.base)
    block = os.urandom(8 * MIB)
    rows = []
    try:
        s3.start()
        s3.client().create_bucket(Bucket="bench")
        for c in [int(x) for x in args.concurrency.split(",")]:
            store = S3Store("bench", "u", s3.endpoint, "us-east-1", s3.access_key, s3.secret_key,
                            upload_concurrency=c)
            times = []
            for r in range(args.repeat):
                t0 = time.monotonic()
                up = store.begin_upload(f"obj-{c}-{r}", 8 * MIB)
                for _ in range(args.mb * 1_000_000 // len(block)):
                    up.write(block)
                n = up.complete()
                times.append(time.monotonic() - t0)
                store.delete(f"obj-{c}-{r}")
            rows.append((c, n, sorted(times)[len(times) // 2]))
            print(f"concurrency {c}: median {rows[-1][2]:.2f}s", flush=True)
    finally:
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nmultipart upload of {rows[0][1] / 1e6:.0f} MB (8 MiB parts) to SeaweedFS on loopback, median of {args.repeat}")
    print(f"{'parts in flight':>15} {'time':>8} {'MB/s':>7} {'vs 1':>6}")
    for c, n, t in rows:
        print(f"{c:>15} {t:>7.2f}s {n / 1e6 / t:>7.0f} {rows[0][2] / t:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
