"""Snapshot stores. `open_store(cfg)` picks the backend the config names."""
from __future__ import annotations

from .base import Store, Upload, part_size_for  # noqa: F401


def open_store(cfg) -> Store:
    if cfg.store == "s3":
        from .s3 import S3Store
        return S3Store(bucket=cfg.s3_bucket, prefix=cfg.s3_prefix, endpoint=cfg.s3_endpoint,
                       region=cfg.s3_region, access_key=cfg.s3_access_key, secret_key=cfg.s3_secret_key,
                       upload_concurrency=cfg.s3_upload_concurrency)
    from .local import LocalStore
    return LocalStore(cfg.store_path)
