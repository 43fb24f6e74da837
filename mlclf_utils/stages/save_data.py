"""Stage 02: the 01 table as a ``DatasetDict`` on disk, and optionally on S3 for SageMaker.

The reusable part (building the ``DatasetDict``, saving a split as a self-contained channel,
loading it back) is ``mlclf_utils.data.dataset``; this module owns where a run keeps it
(``02_save_data/dataset/<split>``) and ``channels.json``, the one file that tells 03 where each
split lives, locally or on S3. Its top-level imports stay light: the training entry point reads
``SHARED_SETTINGS`` from here inside a SageMaker container.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError, ParameterError

STAGE = artifacts.SAVE_DATA
# The values 01 chooses that later stages read from its preprocess_config.json (02 copies it
# into every split) rather than take as parameters of their own (issue 11): 03 trains, and 04
# and 05 infer, on 01's tokens.
SHARED_SETTINGS = ("model_name", "max_length")


@dataclass(frozen=True)
class Config:
    """02's parameters and their defaults (the notebook's parameters cell repeats them)."""

    s3_uri: str | None = None

    def __post_init__(self) -> None:
        if self.s3_uri is not None:
            if not isinstance(self.s3_uri, str) or not self.s3_uri:
                raise ParameterError("s3_uri", self.s3_uri, 'must be "s3://bucket/prefix" or None')
            from mlclf_utils.cloud import s3

            s3.parse_s3_uri(self.s3_uri)  # a malformed URI fails before any work

    @classmethod
    def from_parameters(cls, **values) -> "Config":
        """Build from a notebook's parameters; unknown names are an error, not ignored."""
        from mlclf_utils.stages import config_values

        return cls(**config_values(cls, values, strict=True))


def check(params: dict) -> None:
    """02's parameters, before any work: a given ``s3_uri`` must parse (the upload itself is
    checked when it happens)."""
    Config.from_parameters(**{k: v for k, v in params.items() if k != "run_dir"})


def dataset_dir(run_dir: str | Path) -> Path:
    """``02_save_data/dataset``: one ``save_to_disk`` folder per split."""
    return artifacts.path(run_dir, STAGE, artifacts.DATASET_DIR)


def split_dir(run_dir: str | Path, split: str) -> Path:
    """The local folder of one split, which is also what a SageMaker channel mounts."""
    if split not in artifacts.SPLITS:
        raise ParameterError("split", split, f"choose one of {artifacts.SPLITS}")
    return dataset_dir(run_dir) / split


def build(run_dir: str | Path):
    """01's artifacts as ``(dataset_dict, class_stats, label_map, preprocess_config)``."""
    from mlclf_utils.data import dataset
    from mlclf_utils.stages import preprocess

    table, label_map, preprocess_config = preprocess.load_artifacts(run_dir)
    dataset_dict = dataset.build_dataset_dict(table, label_map)
    return dataset_dict, dataset.class_statistics(table, label_map), label_map, preprocess_config


def save_local(run_dir: str | Path, dataset_dict, *, label_map, class_stats: dict,
               preprocess_config: dict) -> Path:
    """Every split under ``02_save_data/dataset``, each with its label map, class statistics and
    01's config beside it; returns the dataset folder."""
    from mlclf_utils.data import dataset

    return dataset.save_dataset(dataset_dict, dataset_dir(run_dir), label_map=label_map,
                                class_stats=class_stats, preprocess_config=preprocess_config)


def publish_channels(run_dir: str | Path, s3_uri: str | None = None, *,
                     progress: bool = True) -> dict[str, str]:
    """Write ``channels.json``: each split's local folder, or with ``s3_uri`` its verified S3
    copy, so that 03 trains from whichever the run chose without a parameter of its own."""
    channels = {split: str(split_dir(run_dir, split)) for split in artifacts.SPLITS}
    if s3_uri:
        from mlclf_utils.cloud import s3

        channels = s3.upload_dataset_channels(dataset_dir(run_dir), s3_uri, progress=progress)
    artifacts.write_json(artifacts.path(run_dir, STAGE, artifacts.CHANNELS), channels)
    return channels


def read_channels(run_dir: str | Path) -> dict[str, str]:
    """``channels.json`` of a run: split name -> local folder or ``s3://`` URI."""
    path = artifacts.path(run_dir, STAGE, artifacts.CHANNELS)
    channels = artifacts.read_json(path, what="the channels of 02_save_data",
                                   hint="run 02_save_data on this run first")
    if not isinstance(channels, dict) or not all(isinstance(v, str) for v in channels.values()):
        raise DataError("expected an object {split: folder or s3:// URI}", file=str(path))
    return channels


def run(run_dir: str | Path, config: Config = Config(), *, progress: bool = False) -> dict:
    """The whole of 02 headless, the notebook's steps in order; returns a small summary."""
    from mlclf_utils.runner import runs

    dataset_dict, class_stats, label_map, preprocess_config = build(run_dir)  # needs 01's files
    runs.stage_dir(run_dir, STAGE)  # refuses a folder that already holds artifacts
    save_local(run_dir, dataset_dict, label_map=label_map, class_stats=class_stats,
               preprocess_config=preprocess_config)
    channels = publish_channels(run_dir, config.s3_uri, progress=progress)
    return {"rows": dict(class_stats["rows"]), "labels": len(label_map), "channels": channels}
