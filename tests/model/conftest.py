"""A small run directory with real 01 and 02 artifacts (smoke CSV, MiniLM tokenizer)."""

import pytest

from mlclf_utils import cleaning, dataset, labels, models, preprocess, sources, splitting
from mlclf_utils.tokenization import tokenize_table


def build_smoke_run(run_dir, smoke_csv, *, max_length=64):
    config = preprocess.PreprocessConfig(source=str(smoke_csv), text_column="description",
                                         labels_column="tags", sample_size=None,
                                         min_label_count=5, model_name=models.TINY_MODEL,
                                         max_length=max_length)
    table, _ = sources.load_source(config.source, text_column="description", labels_column="tags")
    table, _ = cleaning.clean_column(table, config.cleaning_config)
    table = labels.normalise_label_column(table, labels.LabelPolicy())
    table, _ = labels.quality_report(table, min_label_count=config.min_label_count)
    label_map = labels.LabelMap.from_table(table)
    table, _ = splitting.stratified_split(table, label_map, seed=config.seed)
    table, _ = tokenize_table(table, models.load_tokenizer(models.TINY_MODEL),
                              max_length=max_length, progress=False)
    preprocess.save_artifacts(run_dir, table, label_map, config, {})
    stats = dataset.class_statistics(table, label_map)
    dataset.save_dataset(dataset.build_dataset_dict(table, label_map), run_dir / dataset.STAGE,
                         label_map=label_map, class_stats=stats,
                         preprocess_config=config.to_dict())
    return run_dir


@pytest.fixture(scope="session")
def smoke_run_template(tmp_path_factory, smoke_csv, tiny_model_dir):
    return build_smoke_run(tmp_path_factory.mktemp("smoke-run"), smoke_csv)


@pytest.fixture()
def smoke_run(smoke_run_template, tmp_path):
    """A private copy, so each test writes its own 03_train."""
    import shutil

    return shutil.copytree(smoke_run_template, tmp_path / "run")
