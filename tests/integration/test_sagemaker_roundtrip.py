"""Stage 03 on SageMaker as a round trip, against a moto server on 127.0.0.1.

moto accepts the job and marks it Completed at once, but runs nothing: each test puts the
job's ``model.tar.gz`` (and ``output.tar.gz``) where the job would have written them.
"""

import io
import json
import tarfile

import pytest

from mlclf_utils import artifacts
from mlclf_utils.cloud import s3, sagemaker_job, sagemaker_training
from mlclf_utils.errors import MlclfError, ParameterError

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("no_real_aws")]

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _place_job_output(bucket: str, job_name: str, model: dict, output: dict | None = None):
    """Where SageMaker puts a job's artifacts with the SDK's default output path."""
    client = s3.s3_client()
    client.put_object(Bucket=bucket, Key=f"{job_name}/output/model.tar.gz", Body=_tarball(model))
    if output is not None:
        client.put_object(Bucket=bucket, Key=f"{job_name}/output/output.tar.gz",
                          Body=_tarball(output))


FAKE_MODEL = {"config.json": b'{"model_type": "distilbert"}', "model.safetensors": b"weights",
              "label_map.json": b'["a", "b"]'}
FAKE_METRICS = {"metrics.json": b'{"best_validation_macro_f1": 0.75, "global_step": 8}',
                "log_history.json": b"[]"}


@pytest.fixture()
def run_with_channels(tmp_path, s3_bucket):
    """A run directory whose 02 uploaded its channels to S3, as 02_save_data leaves it."""
    run_dir = tmp_path / "run"
    (run_dir / "02_save_data").mkdir(parents=True)
    channels = {split: f"s3://{s3_bucket}/mlclf/{split}" for split in ("train", "validation", "test")}
    (run_dir / "02_save_data" / "channels.json").write_text(json.dumps(channels))
    return run_dir


def test_submit_waits_and_unpacks_the_model_as_a_local_run_lays_it_out(run_with_channels, s3_bucket):
    _place_job_output(s3_bucket, "mlclf-roundtrip-1", FAKE_MODEL, FAKE_METRICS)
    result = sagemaker_training.submit(
        run_with_channels, {"epochs": 1}, role=ROLE, default_bucket=s3_bucket,
        instance_type="ml.g5.xlarge", job_name="mlclf-roundtrip-1", wait=True)
    stage = run_with_channels / "03_train"
    assert {p.name for p in (stage / "model").iterdir()} == set(FAKE_MODEL)
    assert {p.name for p in (stage / "metrics").iterdir()} == set(FAKE_METRICS)
    assert result["best_validation_macro_f1"] == 0.75
    assert result["model_uri"] == f"s3://{s3_bucket}/mlclf-roundtrip-1/output/model.tar.gz"
    record = json.loads((stage / artifacts.SAGEMAKER_JOB).read_text())
    assert record["training_job_name"] == "mlclf-roundtrip-1" and record["role"] == ROLE


def test_a_job_submitted_without_waiting_is_attached_later_by_name(run_with_channels, s3_bucket,
                                                                  tmp_path):
    result = sagemaker_training.submit(
        run_with_channels, {"epochs": 1}, role=ROLE, default_bucket=s3_bucket,
        instance_type="ml.g5.xlarge", wait=False)
    name = result["training_job_name"]
    assert not (run_with_channels / "03_train" / "model").exists()
    _place_job_output(s3_bucket, name, FAKE_MODEL)  # the job finishes later

    later = tmp_path / "later-run"
    attached = sagemaker_training.attach(later, name, default_bucket=s3_bucket)
    assert attached["training_job_name"] == name
    assert (later / "03_train" / "model" / "model.safetensors").read_bytes() == b"weights"
    with pytest.raises(MlclfError, match="already holds a model.*--resume"):
        sagemaker_training.attach(later, name, default_bucket=s3_bucket)


def test_a_job_without_a_model_says_so(tmp_path, s3_bucket, run_with_channels):
    result = sagemaker_training.submit(run_with_channels, {"epochs": 1}, role=ROLE,
                                       default_bucket=s3_bucket, instance_type="ml.g5.xlarge",
                                       wait=False)
    with pytest.raises(MlclfError, match="could not be downloaded"):
        sagemaker_training.attach(tmp_path / "r", result["training_job_name"],
                                  default_bucket=s3_bucket)
    _place_job_output(s3_bucket, result["training_job_name"], {"notes.txt": b"no model"})
    with pytest.raises(MlclfError, match=r"holds no model.*config.json"):
        sagemaker_training.attach(tmp_path / "r2", result["training_job_name"],
                                  default_bucket=s3_bucket)


def test_unpack_refuses_members_outside_the_target(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_tarball({"../escaped.txt": b"x"}))
    with pytest.raises(MlclfError, match="unsafe member"):
        sagemaker_training.unpack(archive, tmp_path / "model")
    assert not (tmp_path / "escaped.txt").exists()


def test_outside_studio_role_and_bucket_must_be_given(tmp_path):
    absent = tmp_path / "no-metadata.json"
    with pytest.raises(ParameterError, match=r"role.*Only in SageMaker Studio.*pass role and "
                                             r"default_bucket") as caught:
        sagemaker_training.resolve_role_and_bucket(None, None, metadata_file=absent)
    assert caught.value.name == "role"
    with pytest.raises(ParameterError, match="pass default_bucket"):
        sagemaker_training.resolve_role_and_bucket(ROLE, None, metadata_file=absent)
    assert sagemaker_training.resolve_role_and_bucket(ROLE, "b-1", metadata_file=absent) == (ROLE, "b-1")


def test_in_studio_the_execution_role_and_default_bucket_are_the_defaults(tmp_path, monkeypatch):
    """Studio's metadata file present: the SDK's own lookups fill in what is missing (faked
    here, since they reach STS and the Studio domain, which moto's endpoint does not serve)."""
    import sagemaker

    metadata = tmp_path / "resource-metadata.json"
    metadata.write_text('{"DomainId": "d-1", "UserProfileName": "me"}')
    calls = []
    monkeypatch.setattr(sagemaker, "get_execution_role",
                        lambda session=None: calls.append("role") or ROLE)
    monkeypatch.setattr(sagemaker.Session, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(sagemaker.Session, "default_bucket",
                        lambda self: calls.append("bucket") or "sagemaker-us-east-1-123456789012")
    assert sagemaker_training.resolve_role_and_bucket(None, None, metadata_file=metadata) == (
        ROLE, "sagemaker-us-east-1-123456789012")
    assert calls == ["role", "bucket"]
    assert sagemaker_training.resolve_role_and_bucket("arn:x", None, metadata_file=metadata)[0] == "arn:x"
