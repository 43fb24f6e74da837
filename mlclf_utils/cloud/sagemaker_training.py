"""Stage 03 on SageMaker as a round trip: submit, wait while the job's logs stream, and bring
the model back into the run directory.

A training job tars ``SM_MODEL_DIR`` into ``<output_path>/<job>/output/model.tar.gz`` and
``SM_OUTPUT_DATA_DIR`` into ``output.tar.gz`` beside it. Unpacked into ``03_train/model`` and
``03_train/metrics``, they give exactly the layout of a local run, so 04 and 05 run unchanged.
A job submitted without waiting is brought back later by name with :func:`attach`.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.errors import MlclfError, ParameterError

# SageMaker Studio and notebook instances describe themselves in this file; the SDK reads it
# to find the execution role. Its absence means we are elsewhere, and the SDK would only
# fail after calling STS.
STUDIO_METADATA = Path("/opt/ml/metadata/resource-metadata.json")
MODEL_ARCHIVE, OUTPUT_ARCHIVE = "model.tar.gz", "output.tar.gz"
# What train.py always saves in SM_MODEL_DIR; a model folder without them is not a model.
MODEL_FILES = ("config.json", "model.safetensors")


def in_studio(metadata_file: str | Path = STUDIO_METADATA) -> bool:
    return Path(metadata_file).is_file()


def resolve_role_and_bucket(role: str | None, default_bucket: str | None, *,
                            need_role: bool = True,
                            metadata_file: str | Path = STUDIO_METADATA) -> tuple[str | None, str]:
    """Studio's conventions for what is not given: the execution role and the session's
    default bucket. Outside Studio both must be given, and the error says so at once."""
    if (role or not need_role) and default_bucket:
        return role, default_bucket
    if not in_studio(metadata_file):
        missing = [name for name, value in (("role", role or not need_role),
                                            ("default_bucket", default_bucket)) if not value]
        raise ParameterError(
            missing[0], None,
            "sagemaker mode needs role (an IAM role ARN that SageMaker may assume, e.g. "
            "arn:aws:iam::123456789012:role/SageMakerRole) and default_bucket (an S3 bucket in "
            "the job's region). Only in SageMaker Studio do they default to the execution role "
            "and the session's default bucket; here, pass " + " and ".join(missing))
    import sagemaker

    session = sagemaker.Session()
    if need_role and not role:
        role = sagemaker.get_execution_role(session)
    return role, default_bucket or session.default_bucket()


def submit(run_dir, hyperparameters: dict, *, role, default_bucket, instance_type,
           instance_count=1, transformers_version=None, pytorch_version=None, distribution=None,
           job_name=None, wait=True, logs=True) -> dict:
    """Submit train.py as a Hugging Face job on the channels 02 uploaded; with ``wait``, stream
    its logs until it ends and unpack its model into ``03_train``."""
    from mlclf_utils.cloud import sagemaker_job

    role, default_bucket = resolve_role_and_bucket(role, default_bucket)
    run_dir = Path(run_dir)
    channels = check_channels(run_dir)
    estimator = sagemaker_job.build_estimator(
        role=role, instance_type=instance_type, instance_count=instance_count,
        transformers_version=transformers_version, pytorch_version=pytorch_version,
        hyperparameters={k: v for k, v in hyperparameters.items() if v is not None},
        distribution=distribution, sagemaker_session=sagemaker_job.session(default_bucket),
    )
    name = sagemaker_job.submit_training_job(
        estimator, {"train": channels["train"], "validation": channels["validation"]},
        wait=False, job_name=job_name)
    record = {"training_job_name": name, "default_bucket": default_bucket, "role": role,
              "channels": channels}
    stage = artifacts.path(run_dir, artifacts.TRAIN)
    stage.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(stage / artifacts.SAGEMAKER_JOB, record)
    print(f"submitted SageMaker training job {name}")
    if not wait:
        print(f"not waiting: bring the model back later with attach_job={name!r} in 03 "
              "(python -m mlclf_utils run --resume <this run> --from 03 -p mode sagemaker "
              f"-p attach_job {name})")
        return record
    return {**record, **attach(run_dir, name, default_bucket=default_bucket, logs=logs)}


def attach(run_dir, job_name: str, *, default_bucket: str | None = None, logs: bool = True) -> dict:
    """Wait for a job (new or earlier), streaming its logs, then unpack its model and metrics
    into ``run_dir/03_train`` as a local run would have left them."""
    from mlclf_utils.cloud import s3, sagemaker_job

    _, default_bucket = resolve_role_and_bucket(None, default_bucket, need_role=False)
    session = sagemaker_job.session(default_bucket)
    if logs:
        session.logs_for_job(job_name, wait=True)
    description = _wait(session, job_name)
    stage = artifacts.path(run_dir, artifacts.TRAIN)
    model_dir, metrics_dir = stage / artifacts.MODEL_DIR, stage / artifacts.METRICS_DIR
    if model_dir.exists() and any(model_dir.iterdir()):
        raise MlclfError(f"{model_dir} already holds a model; a run never overwrites another. "
                         "Attach the job in a new run: python -m mlclf_utils run --resume "
                         f"{run_dir} --from 03 -p mode sagemaker -p attach_job {job_name}")
    model_uri = description["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = s3.parse_s3_uri(model_uri)
    client = s3.s3_client()
    with tempfile.TemporaryDirectory(prefix="mlclf-sagemaker-") as scratch:
        archive = Path(scratch) / MODEL_ARCHIVE
        try:
            client.download_file(bucket, key, str(archive))
        except Exception as exc:  # botocore's ClientError has no useful subclass for 404
            raise MlclfError(f"job {job_name} finished, but its model {model_uri} could not be "
                             f"downloaded: {exc}") from None
        unpack(archive, model_dir)
        output_key = key.rsplit("/", 1)[0] + "/" + OUTPUT_ARCHIVE
        try:
            client.download_file(bucket, output_key, str(Path(scratch) / OUTPUT_ARCHIVE))
        except Exception:
            print(f"note: s3://{bucket}/{output_key} is missing; the training curves need it")
        else:
            unpack(Path(scratch) / OUTPUT_ARCHIVE, metrics_dir)
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise MlclfError(f"{model_uri} holds no model train.py saved: {missing} missing")
    metrics_file = metrics_dir / artifacts.TRAINING_METRICS
    metrics = (artifacts.read_json(metrics_file, what="the job's training metrics")
               if metrics_file.is_file() else {})
    print(f"job {job_name}: model unpacked into {model_dir}")
    return {"training_job_name": job_name, "model_uri": model_uri, **metrics}


def _wait(session, job_name: str, poll: int = 30) -> dict:
    """The job's description once it has ended; an error unless it completed."""
    from sagemaker.exceptions import UnexpectedStatusException

    description = session.sagemaker_client.describe_training_job(TrainingJobName=job_name)
    if description["TrainingJobStatus"] in ("InProgress", "Stopping"):
        try:
            description = session.wait_for_job(job_name, poll=poll)
        except UnexpectedStatusException as exc:
            raise MlclfError(f"SageMaker job {job_name} did not complete: {exc}") from None
    if description["TrainingJobStatus"] != "Completed":
        raise MlclfError(f"SageMaker job {job_name} ended {description['TrainingJobStatus']}: "
                         f"{description.get('FailureReason', 'no reason given')}")
    return description


def unpack(archive: Path, target: Path) -> Path:
    """Extract a job's tarball; members that would land outside ``target`` (absolute paths,
    ``..``, links) are refused, as tarfile's "data" filter does."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="r:gz") as tar:
        try:
            tar.extractall(target, filter="data")
        except tarfile.FilterError as exc:
            raise MlclfError(f"{archive.name} holds an unsafe member: {exc}") from None
    return target


def check_channels(run_dir) -> dict:
    """The S3 channels a run's 02 uploaded; an error when its data is only local."""
    channels = artifacts.read_json(artifacts.path(run_dir, artifacts.SAVE_DATA, artifacts.CHANNELS),
                                   what="the channels 02 wrote")
    if not all(str(channels.get(name, "")).startswith("s3://") for name in ("train", "validation")):
        raise ParameterError("s3_uri", None, f"the data of {run_dir} is only local: run "
                             "02_save_data with s3_uri first (SageMaker trains on S3 channels)")
    return channels


def sweep_job_names(prefix: str, count: int) -> list[str]:
    """``<prefix>-01`` ... : one job per sweep combination, named so that each can be found."""
    from mlclf_utils.cloud.sagemaker_job import JOB_NAME_RE

    names = [f"{prefix}-{index:02d}" for index in range(1, count + 1)]
    bad = [name for name in names if not JOB_NAME_RE.match(name)]
    if bad:
        raise ParameterError("--job-prefix", prefix, f"gives job names such as {bad[0]!r}: "
                             "letters, digits and single hyphens, at most 63 characters")
    return names
