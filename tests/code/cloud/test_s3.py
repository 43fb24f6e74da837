"""mlclf_utils.cloud.s3 against a real HTTP endpoint (moto server on 127.0.0.1)."""

import hashlib
import os

import pytest

from mlclf_utils.cloud import s3
from mlclf_utils.errors import MlclfError, ParameterError

pytestmark = pytest.mark.aws

FAKE_SECRET_ENV = "AWS_SECRET_ACCESS_KEY"


@pytest.fixture()
def tree(tmp_path):
    """Nested folders, binary and text files, an empty file and a name with a space."""
    root = tmp_path / "tree"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "top.txt").write_text("hello\nworld\n", encoding="utf-8")
    (root / "a" / "data.bin").write_bytes(os.urandom(70_000))
    (root / "a" / "b" / "empty.json").write_bytes(b"")
    (root / "a" / "b" / "c" / "deep file.arrow").write_bytes(bytes(range(256)) * 40)
    return root


def test_upload_and_verify_a_tree(tree, s3_bucket):
    uri = f"s3://{s3_bucket}/runs/r1/"
    uploaded = s3.upload_directory(tree, uri, progress=False)
    keys = sorted(item["key"] for item in uploaded)
    assert keys == ["runs/r1/a/b/c/deep file.arrow", "runs/r1/a/b/empty.json",
                    "runs/r1/a/data.bin", "runs/r1/top.txt"]
    by_key = {item["key"]: item for item in uploaded}
    assert by_key["runs/r1/a/b/empty.json"]["size"] == 0
    assert by_key["runs/r1/a/data.bin"]["md5"] == hashlib.md5(
        (tree / "a" / "data.bin").read_bytes()).hexdigest()

    report = s3.verify_upload(tree, uri)
    total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert report == {"files": 4, "bytes": total, "ok": True}

    client = s3.s3_client()
    body = client.get_object(Bucket=s3_bucket, Key="runs/r1/a/data.bin")["Body"].read()
    assert body == (tree / "a" / "data.bin").read_bytes()


def test_verify_reports_a_changed_object_of_the_same_size(tree, s3_bucket):
    uri = f"s3://{s3_bucket}/p"
    s3.upload_directory(tree, uri, progress=False)
    client = s3.s3_client()
    original = (tree / "a" / "data.bin").read_bytes()
    client.put_object(Bucket=s3_bucket, Key="p/a/data.bin", Body=bytes(len(original)))
    with pytest.raises(s3.UploadVerificationError) as caught:
        s3.verify_upload(tree, uri)
    assert caught.value.mismatched == ["p/a/data.bin (MD5 differs)"]
    assert not caught.value.missing and not caught.value.extra
    assert "p/a/data.bin" in str(caught.value)


def test_verify_reports_missing_and_extra_objects(tree, s3_bucket):
    uri = f"s3://{s3_bucket}/p"
    s3.upload_directory(tree, uri, progress=False)
    client = s3.s3_client()
    client.delete_object(Bucket=s3_bucket, Key="p/top.txt")
    client.put_object(Bucket=s3_bucket, Key="p/stale/shard.arrow", Body=b"old")
    with pytest.raises(MlclfError) as caught:
        s3.verify_upload(tree, uri)
    assert caught.value.missing == ["p/top.txt"]
    assert caught.value.extra == ["p/stale/shard.arrow"]
    message = str(caught.value)
    assert "missing on S3 (1): p/top.txt" in message
    assert "extra on S3 (1): p/stale/shard.arrow" in message


class _CountingClient:
    """The real client, recording the key count of every ListObjectsV2 page it fetches."""

    def __init__(self, client):
        self._client = client
        self.pages = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_paginator(self, operation):
        paginator = self._client.get_paginator(operation)
        outer = self

        class Recording:
            def paginate(self, **kwargs):
                for page in paginator.paginate(**kwargs):
                    outer.pages.append(page.get("KeyCount"))
                    yield page

        return Recording()


def test_verify_lists_more_than_one_page(tree, s3_bucket, monkeypatch):
    """S3 lists at most 1000 keys per call; a big dataset folder must still verify completely.

    Pages of 2 keys exercise the same continuation-token loop without 1000 uploads.
    """
    monkeypatch.setattr(s3, "LIST_PAGE_SIZE", 2)
    uri = f"s3://{s3_bucket}/many"
    s3.upload_directory(tree, uri, progress=False)
    client = _CountingClient(s3.s3_client())
    assert s3.verify_upload(tree, uri, client=client)["files"] == 4
    assert client.pages == [2, 2]
    client.delete_object(Bucket=s3_bucket, Key="many/top.txt")
    with pytest.raises(s3.UploadVerificationError, match="top.txt"):
        s3.verify_upload(tree, uri, client=client)


class _KmsLikeClient(_CountingClient):
    """Lists ETags that are not MD5s, as S3 does for SSE-KMS objects."""

    def get_paginator(self, operation):
        paginator = super().get_paginator(operation)

        class Opaque:
            def paginate(self, **kwargs):
                for page in paginator.paginate(**kwargs):
                    for item in page.get("Contents", []):
                        item["ETag"] = '"0123456789abcdef0123456789abcdef"'
                    yield page

        return Opaque()


def test_verify_falls_back_to_the_md5_metadata_when_the_etag_is_not_an_md5(tree, s3_bucket):
    uri = f"s3://{s3_bucket}/kms"
    s3.upload_directory(tree, uri, progress=False)
    client = _KmsLikeClient(s3.s3_client())
    assert s3.verify_upload(tree, uri, client=client)["ok"]
    # An object written by someone else carries no md5 metadata: it cannot pass.
    client.put_object(Bucket=s3_bucket, Key="kms/top.txt", Body=(tree / "top.txt").read_bytes())
    with pytest.raises(s3.UploadVerificationError) as caught:
        s3.verify_upload(tree, uri, client=client)
    assert caught.value.mismatched == ["kms/top.txt (MD5 differs)"]


def test_a_sibling_prefix_is_not_mistaken_for_extra_files(tree, s3_bucket):
    s3.upload_directory(tree, f"s3://{s3_bucket}/train", progress=False)
    s3.upload_directory(tree, f"s3://{s3_bucket}/train2", progress=False)
    assert s3.verify_upload(tree, f"s3://{s3_bucket}/train")["ok"]


@pytest.mark.parametrize("uri", [
    "s3:///x", "s3://", "http://bucket/prefix", "bucket/prefix", "s3://ab/x",
    "s3://Bad_Bucket/x", "s3://-bucket/x", "s3://bucket/a//b", "s3://bucket/../x", None,
])
def test_bad_uris_name_the_parameter(uri):
    with pytest.raises(ParameterError) as caught:
        s3.parse_s3_uri(uri, parameter="output_uri")
    assert caught.value.name == "output_uri"
    assert str(caught.value).startswith("parameter output_uri=")


@pytest.mark.parametrize(("uri", "expected"), [
    ("s3://bucket", ("bucket", "")),
    ("s3://bucket/", ("bucket", "")),
    ("s3://my.bucket-1/a/b/", ("my.bucket-1", "a/b")),
    ("s3://abc//a/", ("abc", "a")),
])
def test_parse_good_uris(uri, expected):
    assert s3.parse_s3_uri(uri) == expected


def test_upload_rejects_a_bad_uri_before_touching_s3(tree):
    with pytest.raises(ParameterError) as caught:
        s3.upload_directory(tree, "s3://x/prefix", progress=False)
    assert caught.value.name == "s3_uri"


def test_upload_rejects_missing_or_empty_folders(tmp_path, s3_bucket):
    with pytest.raises(ParameterError, match="not a directory"):
        s3.upload_directory(tmp_path / "nope", f"s3://{s3_bucket}/p", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="no files"):
        s3.upload_directory(tmp_path / "empty", f"s3://{s3_bucket}/p", progress=False)


def test_the_secret_key_never_shows(tree, s3_bucket, capfd):
    secret = os.environ[FAKE_SECRET_ENV]
    uri = f"s3://{s3_bucket}/p"
    s3.upload_directory(tree, uri, progress=True)
    s3.verify_upload(tree, uri)
    s3.s3_client().delete_object(Bucket=s3_bucket, Key="p/top.txt")
    messages = []
    with pytest.raises(MlclfError) as caught:
        s3.verify_upload(tree, uri)
    messages.append(str(caught.value))
    with pytest.raises(Exception) as caught:  # a botocore error: the bucket does not exist
        s3.upload_directory(tree, "s3://no-such-bucket-mlclf/p", progress=False)
    messages.append(str(caught.value))
    out, err = capfd.readouterr()
    assert "upload to" in err  # the progress bar did write to stderr
    for text in (out, err, *messages):
        assert secret not in text


def test_missing_credentials_give_a_setup_error(monkeypatch, tmp_path, no_real_aws):
    from mlclf_utils.errors import SetupError

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SetupError, match="aws configure"):
        s3.s3_client()


def test_dataset_channels_round_trip(tmp_path, s3_bucket):
    import datasets

    table = {
        "text": ["a tool for x", "a library for y", "a game", "a daemon", "an editor", "docs"],
        "labels": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
        "source_id": [f"pkg{i}" for i in range(6)],
    }
    full = datasets.Dataset.from_dict(table)
    parts = datasets.DatasetDict(
        train=full.select(range(4)), validation=full.select([4]), test=full.select([5]))
    dataset_dir = tmp_path / "dataset"
    for split, part in parts.items():
        part.save_to_disk(str(dataset_dir / split))
        (dataset_dir / split / "label_map.json").write_text('{"labels": ["x", "y"]}')

    channels = s3.upload_dataset_channels(dataset_dir, f"s3://{s3_bucket}/runs/r1/02/",
                                          progress=False)
    assert channels == {split: f"s3://{s3_bucket}/runs/r1/02/{split}"
                        for split in ("train", "validation", "test")}

    client = s3.s3_client()
    download = tmp_path / "sm_channel_train"
    listing = client.list_objects_v2(Bucket=s3_bucket, Prefix="runs/r1/02/train/")["Contents"]
    for item in listing:
        target = download / item["Key"][len("runs/r1/02/train/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3_bucket, item["Key"], str(target))
    assert (download / "label_map.json").read_text() == '{"labels": ["x", "y"]}'
    back = datasets.load_from_disk(str(download))
    assert back.to_dict() == parts["train"].to_dict()
    assert back.features == parts["train"].features


def test_dataset_channels_need_save_to_disk_folders(tmp_path, s3_bucket):
    from mlclf_utils.errors import DataError

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "x.csv").write_text("a\n")
    with pytest.raises(DataError, match="state.json"):
        s3.upload_dataset_channels(tmp_path, f"s3://{s3_bucket}/p", splits=("train",))
    with pytest.raises(DataError, match="validation"):
        s3.upload_dataset_channels(tmp_path, f"s3://{s3_bucket}/p", splits=("validation",))
