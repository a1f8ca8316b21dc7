"""The S3 bucket: `Bucket` over boto3, for AWS S3 and every S3-compatible engine (R2, GCS, Ceph, MinIO…).

Endpoint and credentials come from the standard AWS settings (environment, `~/.aws`, profiles), or an
endpoint URL stored with the remote. Conditional writes (`If-None-Match`, `If-Match`) carry the refs'
compare-and-swap; values above `multipart_threshold` go up in parts. Every botocore failure becomes a
one-line RemoteError that says what to check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from functools import partial
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from ..workers import REMOTE_WORKERS
from .bucket import SMALL_VALUE_LIMIT, Entry, KeyMissing, PreconditionFailed, RemoteError, parse_s3_url, too_large

T = TypeVar("T")
MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20  # S3 wants at least 5 MiB for every part but the last
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3Bucket:
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        workers: int = REMOTE_WORKERS,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = endpoint_url
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        config = botocore.config.Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, workers * 2),
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        try:
            self.client: Any = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise RemoteError(f"{url}: cannot set up the S3 client ({exc})") from None
        self.requests: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def _where(self) -> str:
        return f"{self.url}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _call(self, op: str, fn: Callable[[], T], key: str = "") -> T:
        with self._count_lock:
            self.requests[op] = self.requests.get(op, 0) + 1
        try:
            return fn()
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code == "NoSuchBucket":
                raise RemoteError(f"{self._where()}: bucket {self.bucket!r} does not exist") from None
            if code in _MISSING or (status == "404" and code not in _DENIED):
                raise KeyMissing(f"{self.url}: {key} does not exist") from None
            if code in _CONFLICT or status in ("412", "409"):
                raise PreconditionFailed(f"{self.url}: {key} changed or already exists") from None
            if code in _DENIED or status == "403":
                raise RemoteError(
                    f"{self._where()}: access denied ({code or status}); check the AWS credentials "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE)"
                ) from None
            raise RemoteError(
                f"{self._where()}: {op} {key} failed: {code or status} {err.get('Message', '')}"
            ) from None
        except botocore.exceptions.NoCredentialsError:
            raise RemoteError(
                f"{self._where()}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE)"
            ) from None
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError) as exc:
            raise RemoteError(f"{self._where()}: cannot reach the endpoint ({exc})") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise RemoteError(f"{self._where()}: {op} {key} failed ({exc})") from None

    def get(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> bytes:
        found = self.get_with_etag(key, limit=limit)
        if found is None:
            raise KeyMissing(f"{self.url}: {key} does not exist")
        return found[0]

    def get_with_etag(self, key: str, *, limit: int = SMALL_VALUE_LIMIT) -> tuple[bytes, str] | None:
        def fetch() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body = response["Body"]
            size = int(response.get("ContentLength") or 0)
            if size > limit:  # refuse before reading: a hostile remote must not exhaust our memory
                body.close()
                raise too_large(self.url, key, size, limit)
            data: bytes = body.read(limit + 1)
            if len(data) > limit:
                body.close()
                raise too_large(self.url, key, len(data), limit)
            return data, str(response["ETag"])

        try:
            return self._call("get", fetch, key)
        except KeyMissing:
            return None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        def fetch() -> bytes:
            rng = f"bytes={start}-{start + length - 1}"
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key, Range=rng)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # the range starts past the end (an empty object)
                raise
            data: bytes = response["Body"].read()
            return data

        return self._call("get", fetch, key)

    def put(self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None) -> str:
        conditions: dict[str, str] = {}
        if if_absent:
            conditions["IfNoneMatch"] = "*"
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if len(data) >= self.multipart_threshold:
            return self._put_multipart(key, data, conditions)

        def send() -> str:
            response = self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **conditions)
            return str(response["ETag"])

        return self._call("put", send, key)

    def _put_multipart(self, key: str, data: bytes, conditions: dict[str, str]) -> str:
        """Parts in order, completed with the same conditions; an upload that fails is aborted."""
        full = self.prefix + key
        upload = self._call("put", lambda: self.client.create_multipart_upload(Bucket=self.bucket, Key=full), key)
        upload_id = upload["UploadId"]
        try:
            parts = []
            view = memoryview(data)
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                body = bytes(view[start : start + self.part_size])

                def send_part(body: bytes = body, number: int = number) -> Any:
                    return self.client.upload_part(
                        Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
                    )

                parts.append({"PartNumber": number, "ETag": self._call("put", send_part, key)["ETag"]})

            def complete() -> str:
                response = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}, **conditions
                )
                return str(response["ETag"])

            return self._call("put", complete, key)
        except BaseException:
            with suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def delete(self, key: str) -> None:
        self._call("delete", lambda: self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key), key)

    def list(self, prefix: str) -> Iterator[Entry]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = self._call("list", partial(self.client.list_objects_v2, **kwargs), prefix)
            for item in page.get("Contents", []):
                key, modified = item["Key"][len(self.prefix) :], item["LastModified"].timestamp()
                yield Entry(key, int(item["Size"]), modified, str(item.get("ETag", "")))
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
