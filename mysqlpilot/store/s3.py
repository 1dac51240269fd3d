"""S3 API store (AWS, MinIO, Ceph, SeaweedFS, a Manta S3 gateway) through boto3.

We drive the multipart upload ourselves: boto3's upload_fileobj completes an upload at EOF even when
the producer died halfway, which leaves a truncated object that looks valid. Here an object exists
only after `complete()`, which the caller invokes only once the backup tool reported success.
"""
from __future__ import annotations

import io
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, List, Optional, Tuple

import boto3
import botocore.config
import botocore.exceptions

from ..errors import PilotError
from .base import MIN_PART, Store, Upload

log = logging.getLogger(__name__)


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str = "", endpoint: Optional[str] = None,
                 region: Optional[str] = None, access_key: Optional[str] = None,
                 secret_key: Optional[str] = None, upload_concurrency: int = 4):
        self.bucket = bucket
        self.upload_concurrency = upload_concurrency
        self.prefix = (prefix or "").strip("/")
        self.endpoint = endpoint
        cfg = botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5,
                                     read_timeout=60, s3={"addressing_style": "path"},
                                     max_pool_connections=max(10, upload_concurrency + 2))
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region or "us-east-1",
                               aws_access_key_id=access_key, aws_secret_access_key=secret_key, config=cfg)

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key.lstrip('/')}" if self.prefix else key.lstrip("/")

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def error(self, exc: Exception, what: str) -> PilotError:
        """One line naming the bucket or endpoint; never the credentials."""
        if isinstance(exc, botocore.exceptions.EndpointConnectionError) or isinstance(
                exc, botocore.exceptions.ConnectTimeoutError):
            return PilotError(f"cannot reach the S3 endpoint {self.endpoint or 'AWS'} ({what}); check "
                              "s3_endpoint and that the store runs")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return PilotError("no S3 credentials: set $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, botocore.exceptions.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and what == "check"):
                return PilotError(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint or 'AWS'}; "
                                  "create it or fix s3_bucket")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403") or status == 403:
                return PilotError(f"S3 at {self.endpoint or 'AWS'} refused access to bucket {self.bucket!r} "
                                  f"({code or status}); check $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY and "
                                  "the bucket policy")
            if code in ("NoSuchKey", "404", "NotFound"):
                return PilotError(f"object {what} not found in s3://{self.bucket}")
            return PilotError(f"S3 {what} on bucket {self.bucket!r} failed: {code or status}")
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return PilotError(f"S3 {what} on bucket {self.bucket!r} failed: {exc.__class__.__name__}")
        raise exc

    def check(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - mapped to a one-line error or re-raised
            raise self.error(exc, "check") from None

    def begin_upload(self, key: str, part_size: int) -> Upload:
        return _S3Upload(self, self._k(key), max(MIN_PART, part_size), self.upload_concurrency)

    def open_read(self, key: str) -> BinaryIO:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, key) from None

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, f"write of {key}") from None

    def get_bytes(self, key: str) -> bytes:
        body = self.open_read(key)
        try:
            return body.read()
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self.error(exc, key) from None

    def size(self, key: str) -> int:
        try:
            return int(self.s3.head_object(Bucket=self.bucket, Key=self._k(key))["ContentLength"])
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, key) from None

    def list(self, prefix: str) -> List[str]:
        out: List[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=self._k(prefix))
            for page in pages:
                for obj in page.get("Contents", []) or []:
                    out.append(obj["Key"][strip:])
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, "list") from None
        return sorted(out)

    def delete(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self._k(key))     # S3: deleting a missing key is OK
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, key) from None

    def pending_uploads(self) -> List[str]:
        """Keys of multipart uploads begun but neither completed nor aborted (tests, diagnostics)."""
        res = self.s3.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in res.get("Uploads", []) or []]


class _S3Upload(Upload):
    """Parts go up `concurrency` at a time (a bounded window: memory is concurrency x part_size), numbered
    in stream order; the object appears only at complete(), and any failed part aborts the upload."""

    def __init__(self, store: S3Store, key: str, part_size: int, concurrency: int = 1):
        self.st, self.key, self.part_size = store, key, part_size
        self.concurrency = max(1, concurrency)
        self.buf = io.BytesIO()
        self.parts: List[dict] = []
        self.upload_id: Optional[str] = None
        self.n = 0
        self.next_part = 1
        self.pool: Optional[ThreadPoolExecutor] = None
        self.inflight: List[Tuple[int, Future]] = []

    def _begin(self) -> None:
        try:
            res = self.st.s3.create_multipart_upload(Bucket=self.st.bucket, Key=self.key)
        except Exception as exc:  # noqa: BLE001
            raise self.st.error(exc, f"upload of {self.key}") from None
        self.upload_id = res["UploadId"]

    def _put_part(self, num: int, data: bytes) -> str:
        return self.st.s3.upload_part(Bucket=self.st.bucket, Key=self.key, UploadId=self.upload_id,
                                      PartNumber=num, Body=data)["ETag"]

    def _collect(self) -> None:
        num, fut = self.inflight.pop(0)
        try:
            self.parts.append({"PartNumber": num, "ETag": fut.result()})
        except Exception as exc:  # noqa: BLE001
            self.abort()
            raise self.st.error(exc, f"upload of {self.key}") from None

    def _send_part(self, data: bytes) -> None:
        if self.upload_id is None:
            self._begin()
        num = self.next_part
        if num > 10_000:
            self.abort()
            raise PilotError(f"upload of {self.key} exceeds S3's 10,000 parts; the size estimate was too low")
        self.next_part += 1
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="s3-part")
        while len(self.inflight) >= self.concurrency:
            self._collect()
        self.inflight.append((num, self.pool.submit(self._put_part, num, data)))

    def _drain(self) -> None:
        while self.inflight:
            self._collect()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None

    def write(self, chunk: bytes) -> None:
        self.buf.write(chunk)
        self.n += len(chunk)
        if self.buf.tell() >= self.part_size:
            data = self.buf.getvalue()
            self.buf = io.BytesIO()
            self._send_part(data)

    def complete(self) -> int:
        rest = self.buf.getvalue()
        self.buf = io.BytesIO()
        try:
            if self.upload_id is None:
                # Small object: one PUT, still only now that the producer succeeded.
                self.st.s3.put_object(Bucket=self.st.bucket, Key=self.key, Body=rest)
                return self.n
            if rest or not (self.parts or self.inflight):
                self._send_part(rest)
            self._drain()
            parts = sorted(self.parts, key=lambda p: p["PartNumber"])
            self.st.s3.complete_multipart_upload(Bucket=self.st.bucket, Key=self.key, UploadId=self.upload_id,
                                                 MultipartUpload={"Parts": parts})
        except PilotError:
            raise
        except Exception as exc:  # noqa: BLE001
            self.abort()
            raise self.st.error(exc, f"upload of {self.key}") from None
        return self.n

    def abort(self) -> None:
        inflight, self.inflight = self.inflight, []
        for _num, fut in inflight:          # let parts in flight finish before the upload goes
            fut.cancel()
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - their outcome no longer matters
                pass
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.upload_id is None:
            return
        try:
            self.st.s3.abort_multipart_upload(Bucket=self.st.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception as exc:  # noqa: BLE001 - best effort; log, the bucket lifecycle can clean up
            log.warning("could not abort multipart upload of %s: %s", self.key, exc.__class__.__name__)
        self.upload_id = None
