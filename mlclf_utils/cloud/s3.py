"""Putting run folders on S3 so a SageMaker job can mount them as input channels.

Credentials come only from boto3's standard chain (environment, shared config, instance or
Studio role); nothing here accepts, prints or logs a key. ``AWS_ENDPOINT_URL`` is honoured by
boto3 itself, which is how the tests point everything at a local moto server.

Integrity: every file goes up with a single ``PutObject`` call carrying ``Content-MD5``, so S3
rejects a body corrupted on the way, and for a single-part upload the object's ETag is the
MD5 of its bytes. The MD5 is also stored as object metadata (``x-amz-meta-md5``), because with
SSE-KMS encryption the ETag is not the MD5; :func:`verify_upload` falls back to it only then.
``PutObject`` takes at most 5 GiB per object; ``save_to_disk`` shards are 500 MB by default.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from mlclf_utils.errors import DataError, MlclfError, ParameterError, SetupError

MAX_SINGLE_PUT = 5 * 1024**3  # PutObject's limit per object
MD5_METADATA_KEY = "md5"  # sent as x-amz-meta-md5
_CHUNK = 1024 * 1024
LIST_PAGE_SIZE = 1000  # keys per ListObjectsV2 call (S3's maximum); tests make it small
# S3's rules for new buckets: 3-63 characters, lowercase letters, digits, dots and hyphens,
# starting and ending with a letter or digit, no "..", not shaped like an IP address.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class UploadVerificationError(MlclfError):
    """The objects under an S3 prefix differ from the local folder they were uploaded from."""

    def __init__(self, s3_uri: str, *, missing: list[str], extra: list[str],
                 mismatched: list[str]) -> None:
        self.s3_uri = s3_uri
        self.missing = missing
        self.extra = extra
        self.mismatched = mismatched
        lines = [f"the upload to {s3_uri} does not match the local folder:"]
        for title, items in (("missing on S3", missing), ("extra on S3", extra),
                             ("different size or MD5", mismatched)):
            if items:
                shown = ", ".join(items[:20])
                more = f" and {len(items) - 20} more" if len(items) > 20 else ""
                lines.append(f"  {title} ({len(items)}): {shown}{more}")
        lines.append("  -> upload again (to a fresh prefix if objects are extra)")
        super().__init__("\n".join(lines))


def validate_bucket_name(bucket: str, *, parameter: str = "bucket") -> str:
    """Fail early on names S3 would reject with an opaque error later."""
    if (
        not isinstance(bucket, str)
        or not _BUCKET_RE.match(bucket)
        or ".." in bucket
        or _IP_RE.match(bucket)
    ):
        raise ParameterError(
            parameter, bucket,
            "not a valid S3 bucket name (3-63 characters: lowercase letters, digits, '.' and "
            "'-', starting and ending with a letter or digit)",
        )
    return bucket


def parse_s3_uri(uri: str, *, parameter: str = "s3_uri") -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b")``; a typo fails here, before any upload."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ParameterError(parameter, uri, "expected an S3 URI like s3://bucket/prefix")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ParameterError(parameter, uri, "the S3 URI has no bucket (s3://bucket/prefix)")
    try:
        validate_bucket_name(bucket, parameter=parameter)
    except ParameterError:
        raise ParameterError(
            parameter, uri,
            f"{bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase letters, "
            "digits, '.' and '-', starting and ending with a letter or digit)",
        ) from None
    prefix = prefix.strip("/")
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ParameterError(parameter, uri, "the prefix has an empty, '.' or '..' segment")
    return bucket, prefix


def s3_client():
    """An S3 client from the standard credential chain; fails early, naming no secret.

    A fresh boto3 session each time, so that credentials or ``AWS_ENDPOINT_URL`` set after
    import (notebooks, test fixtures) are picked up.
    """
    import boto3

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise SetupError(
            "no AWS credentials found. Configure them outside Python: `aws configure` (or "
            "`aws sso login --profile NAME` and AWS_PROFILE=NAME), the AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY environment variables, or an instance / Studio role"
        )
    return session.client("s3")


def _key(prefix: str, relative: str) -> str:
    return f"{prefix}/{relative}" if prefix else relative


def _md5_of(path: Path) -> hashlib._Hash:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest


def _local_files(local_dir: str | Path, *, parameter: str = "local_dir") -> dict[str, Path]:
    """Relative POSIX path -> file, for every file below ``local_dir`` (hidden ones too)."""
    root = Path(local_dir)
    if not root.is_dir():
        raise ParameterError(parameter, str(local_dir), "not a directory")
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}
    if not files:
        raise ParameterError(parameter, str(local_dir), "holds no files; nothing to upload")
    return files


def upload_directory(local_dir: str | Path, s3_uri: str, *, client=None,
                     progress: bool = True) -> list[dict]:
    """Upload every file below ``local_dir`` to ``s3_uri``; returns one ``{key, size, md5}`` each.

    Keys are the prefix plus the file's path relative to ``local_dir`` (POSIX separators).
    """
    from tqdm.auto import tqdm

    bucket, prefix = parse_s3_uri(s3_uri)
    files = _local_files(local_dir)
    too_big = [rel for rel, path in files.items() if path.stat().st_size > MAX_SINGLE_PUT]
    if too_big:
        raise DataError(
            "larger than the 5 GiB a single PutObject accepts", file=str(local_dir),
            hint=f"re-save with a smaller max_shard_size; files: {too_big[:10]}",
        )
    client = client or s3_client()
    total = sum(path.stat().st_size for path in files.values())
    uploaded = []
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
              desc=f"upload to s3://{bucket}/{prefix}", disable=not progress) as bar:
        for relative, path in files.items():
            digest = _md5_of(path)
            key = _key(prefix, relative)
            size = path.stat().st_size
            with open(path, "rb") as body:
                client.put_object(
                    Bucket=bucket, Key=key, Body=body,
                    ContentMD5=base64.b64encode(digest.digest()).decode("ascii"),
                    Metadata={MD5_METADATA_KEY: digest.hexdigest()},
                )
            uploaded.append({"key": key, "size": size, "md5": digest.hexdigest()})
            bar.update(size)
    return uploaded


def _list_objects(client, bucket: str, prefix: str) -> dict[str, dict]:
    """Every object below the prefix, all pages; S3 returns at most 1000 keys per call."""
    objects = {}
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "",
                               PaginationConfig={"PageSize": LIST_PAGE_SIZE})
    for page in pages:
        for item in page.get("Contents", []):
            objects[item["Key"]] = item
    return objects


def verify_upload(local_dir: str | Path, s3_uri: str, *, client=None) -> dict:
    """Compare every local file's size and MD5 with its object; raise if anything differs.

    Console-made "folder" markers (keys ending in ``/`` with no bytes) are not files and are
    not counted as extra.
    """
    bucket, prefix = parse_s3_uri(s3_uri)
    files = _local_files(local_dir)
    client = client or s3_client()
    objects = _list_objects(client, bucket, prefix)
    expected = {_key(prefix, rel): path for rel, path in files.items()}
    missing = sorted(key for key in expected if key not in objects)
    extra = sorted(
        key for key, item in objects.items()
        if key not in expected and not (key.endswith("/") and item.get("Size", 0) == 0)
    )
    mismatched = []
    total = 0
    for key, path in expected.items():
        if key in missing:
            continue
        size = path.stat().st_size
        total += size
        item = objects[key]
        if item.get("Size") != size:
            mismatched.append(f"{key} (size {item.get('Size')} on S3, {size} locally)")
            continue
        md5 = _md5_of(path).hexdigest()
        if item.get("ETag", "").strip('"') == md5:
            continue
        # With SSE-KMS the ETag is not the MD5; the metadata written at upload then decides.
        head = client.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(MD5_METADATA_KEY) != md5:
            mismatched.append(f"{key} (MD5 differs)")
    if missing or extra or mismatched:
        raise UploadVerificationError(f"s3://{bucket}/{prefix}", missing=missing, extra=extra,
                                      mismatched=mismatched)
    return {"files": len(expected), "bytes": total, "ok": True}


def upload_dataset_channels(dataset_dir: str | Path, s3_uri: str,
                            splits=("train", "validation", "test"), *, client=None,
                            progress: bool = True) -> dict[str, str]:
    """Upload each split folder to ``<s3_uri>/<split>/`` and verify it: one channel per split.

    A SageMaker job mounts each URI at ``SM_CHANNEL_<SPLIT>``, so the entry point calls
    ``load_from_disk`` on that folder unchanged.
    """
    bucket, prefix = parse_s3_uri(s3_uri)
    root = Path(dataset_dir)
    if not root.is_dir():
        raise ParameterError("dataset_dir", str(dataset_dir), "not a directory")
    if isinstance(splits, str) or not splits:
        raise ParameterError("splits", splits, "expected a non-empty list of split names")
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"no folder for the split {split!r}", file=str(folder),
                            hint="run 02_save_data first, or pass the splits that exist")
        if not (folder / "state.json").is_file():
            raise DataError("not a datasets save_to_disk folder (no state.json)", file=str(folder),
                            hint="save each split with Dataset.save_to_disk (02_save_data)")
    client = client or s3_client()
    channels = {}
    for split in splits:
        uri = f"s3://{bucket}/{_key(prefix, split)}"
        upload_directory(root / split, uri, client=client, progress=progress)
        verify_upload(root / split, uri, client=client)
        channels[split] = uri
    return channels
