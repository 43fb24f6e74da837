"""benchmarks/held_out_pool.py's pool: exactly the rows a run's sample left out, none of its texts.

A small real table goes through 01's own steps (load, sample, clean, labels, split, files) into
a fake run; the pool is then rebuilt from that run's files alone and checked against what the
test knows independently: which rows 01 sampled, which texts the run holds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from mlclf_utils import artifacts
from mlclf_utils.errors import DataError
from mlclf_utils.stages import preprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from held_out_pool import build_pool  # noqa: E402

ROWS, SAMPLE, SEED = 160, 80, 7
WORDS = ["editor", "daemon", "game", "shell", "viewer", "mail", "audio", "font"]


def write_table(path: Path) -> pd.DataFrame:
    """Texts with three common labels; some texts repeated (so a copy may fall outside the
    sample), rows whose only label is rare or whose text is only a URL."""
    rows = []
    for i in range(ROWS):
        labels = ["A", "B", "C"][i % 3] + ("," + ["B", "C", "A"][i % 3] if i % 4 == 0 else "")
        text = f"Package {i} is a {WORDS[i % len(WORDS)]} tool number {i * 7}\n"
        if i % 8 == 1:
            text = f"Shared description {i // 16} of a tool"  # two copies each
        if i % 25 == 3:
            labels = "Rare"
        if i % 20 == 7:
            text = "https://example.org/only-a-link"
        rows.append({"text": text, "labels": labels})
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return frame


def make_run(tmp_path: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A run folder holding 01's files, made by 01's steps; ``(run, source, sample)``."""
    source = tmp_path / "packages.csv"
    write_table(source)
    config = preprocess.Config(source=str(source), sample_size=SAMPLE, seed=SEED,
                               min_label_count=10, label_audit=False)
    table, source_report, sample_report = preprocess.load(config)
    sample = table.copy()
    table, cleaning = preprocess.clean(table, config)
    table, label_map, quality = preprocess.audit_labels(table, config)
    table, label_map, split_report = preprocess.split(table, label_map, config)
    table = table.assign(input_ids=[[101, 102]] * len(table), n_tokens=2)
    reports = preprocess.collect_reports(source=source_report, sample=sample_report,
                                         cleaning=cleaning, quality=quality, split=split_report,
                                         tokens={})
    run = tmp_path / "run"
    preprocess.save_artifacts(run, table, label_map, config, reports, quality=quality,
                              split_report=split_report)
    everything, _, _ = preprocess.load(preprocess.Config(source=str(source), sample_size=None,
                                                         label_audit=False))
    return run, everything, sample


def test_the_pool_is_the_exact_complement_with_every_drop_counted(tmp_path):
    run, everything, sample = make_run(tmp_path)
    run_table, label_map, _ = preprocess.load_artifacts(run)
    pool, drops = build_pool(run)

    left_out = set(everything["source_id"]) - set(sample["source_id"])
    assert len(left_out) == ROWS - SAMPLE
    assert set(pool["source_id"]) <= left_out
    assert not set(pool["source_id"]) & set(run_table["source_id"])
    assert pool["source_id"].is_unique

    # What each drop should have removed, worked out here from the raw rows.
    raw = everything.set_index("source_id").loc[sorted(left_out)]
    empty = {i for i, t in raw["text"].items() if t.startswith("https://")}
    no_label = {i for i, labels in raw["labels"].items()
                if not {x.strip().lower() for x in labels} & set(label_map.labels)}
    stripped = {i: " ".join(t.split()) for i, t in raw["text"].items()}
    in_run = {i for i in left_out - empty - no_label if stripped[i] in set(run_table["text"])}
    assert empty and no_label and in_run  # the table was built so that each drop happens
    assert set(pool["source_id"]) == left_out - empty - no_label - in_run
    assert drops == {"source_rows": ROWS, "sampled_by_the_run": SAMPLE,
                     "not_sampled": ROWS - SAMPLE, "dropped_empty_after_cleaning": len(empty),
                     "labels_removed_outside_label_map": len(no_label),
                     "dropped_no_label_left": len(no_label), "dropped_text_in_run": len(in_run),
                     "pool_rows": len(pool)}

    assert not set(pool["text"]) & set(run_table["text"])
    assert all(t == " ".join(t.split()) for t in pool["text"])  # cleaned as the run cleans
    assert all(labels and set(labels) <= set(label_map.labels) for labels in pool["labels"])


def test_a_sample_that_is_not_the_runs_is_refused(tmp_path):
    run, _, _ = make_run(tmp_path)
    config_path = artifacts.path(run, preprocess.STAGE, artifacts.PREPROCESS_CONFIG)
    config = artifacts.read_json(config_path)
    artifacts.write_json(config_path, {**config, "seed": SEED + 1})
    with pytest.raises(DataError, match="is not the run's"):
        build_pool(run)


def test_a_manifest_that_disagrees_with_the_runs_config_is_refused(tmp_path):
    run, _, _ = make_run(tmp_path)
    artifacts.write_json(run / artifacts.MANIFEST, {"stages": [
        {"stage": preprocess.STAGE, "parameters": {"sample_size": SAMPLE, "seed": SEED + 1}}]})
    with pytest.raises(DataError, match=r"\['seed'\] differ"):
        build_pool(run)
    artifacts.write_json(run / artifacts.MANIFEST, {"stages": [
        {"stage": preprocess.STAGE, "parameters": {"sample_size": SAMPLE, "seed": SEED}}]})
    assert len(build_pool(run)[0]) > 0
