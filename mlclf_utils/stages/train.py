"""Stage 03: fine-tuning, locally, under torchrun or as a SageMaker job."""

from __future__ import annotations

from mlclf_utils import artifacts
from mlclf_utils.errors import check_positive_int

STAGE = artifacts.TRAIN


def check(params: dict) -> None:
    """The hyperparameters as the training entry point would refuse them, and for SageMaker a
    role and bucket (outside Studio, where the SDK finds them over the network)."""
    from mlclf_utils.modeling import train

    for name in ("nproc_per_node", "instance_count"):
        if name in params:
            check_positive_int(name, params[name])
    hyper = {k: params[k] for k in train.NOTEBOOK_HYPERPARAMETERS if k in params}
    train.check_hyperparameters(hyper, mode=params.get("mode", "local"))
    if params.get("mode") == "sagemaker":
        from mlclf_utils.cloud.sagemaker_training import in_studio, resolve_role_and_bucket

        if not in_studio():
            resolve_role_and_bucket(params.get("role"), params.get("default_bucket"),
                                    need_role=not params.get("attach_job"))
