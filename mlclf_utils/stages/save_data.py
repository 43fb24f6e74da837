"""Stage 02: the 01 table as a ``DatasetDict`` on disk, and optionally on S3 for SageMaker."""

from __future__ import annotations

from mlclf_utils import artifacts

STAGE = artifacts.SAVE_DATA


def check(params: dict) -> None:
    """A given ``s3_uri`` must parse; the upload itself is checked when it happens."""
    if params.get("s3_uri"):
        from mlclf_utils.cloud import s3

        s3.parse_s3_uri(params["s3_uri"])
