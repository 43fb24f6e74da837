"""Stages 01-05 end to end with papermill and the smoke parameters; S3 and SageMaker on moto."""

import json

import boto3
import pandas as pd
import pytest

from mlclf_utils import pipeline, references
from mlclf_utils.runs import read_json

NOTEBOOKS = pipeline.stage_notebooks()[:5]


@pytest.mark.notebooks
@pytest.mark.slow
def test_smoke_pipeline_trains_evaluates_and_bundles_a_model(runs_root):
    run_dir = pipeline.run_pipeline(references.smoke_parameters(), notebooks=NOTEBOOKS,
                                    progress=False)
    manifest = read_json(run_dir / "manifest.json")
    assert [s["status"] for s in manifest["stages"]] == ["ok"] * 5

    data = run_dir / "02_save_data"
    assert {p.name for p in (data / "dataset").iterdir()} >= {"train", "validation", "test"}
    channels = read_json(data / "channels.json")
    assert channels["train"].endswith("02_save_data/dataset/train")

    model = run_dir / "03_train" / "model"
    assert {"model.safetensors", "label_map.json", "pos_weight.json", "tokenizer.json"} <= {
        p.name for p in model.iterdir()}
    metrics = read_json(run_dir / "03_train" / "metrics" / "metrics.json")
    assert metrics["global_step"] == 8 and 0 <= metrics["best_validation_macro_f1"] <= 1
    for figure in ("bce_stability", "pos_weight_effect", "pos_weight_tradeoff", "pos_weights",
                   "training_curves"):
        assert (run_dir / "03_train" / "figures" / f"{figure}.png").stat().st_size > 5000

    evaluation = run_dir / "04_evaluate"
    report = read_json(evaluation / "report.json")
    assert set(report["comparison"]) >= {"fine-tuned, tuned thresholds", "TF-IDF + LR, tuned thresholds",
                                         "plain BCE @ 0.5"}
    assert report["test_tuned"]["n_labels"] == 10
    table = pd.read_parquet(evaluation / "misclassifications.parquet")
    assert len(table) == 40 and {"false_positives", "false_negatives"} <= set(table.columns)
    from mlclf_utils.predict import Classifier

    classifier = Classifier.load(evaluation / "bundle")
    thresholds = read_json(evaluation / "thresholds.json")
    assert list(classifier.labels) == thresholds["labels"]
    predictions = classifier.predict(["A Qt front end for the shell", "Plays music and video"])
    assert len(predictions) == 2 and set(predictions[0]["probabilities"]) == set(classifier.labels)
    for figure in ("f1_vs_threshold", "per_class_f1", "pr_curves", "confusion_counts",
                   "reliability", "label_confusion"):
        assert (evaluation / "figures" / f"{figure}.png").stat().st_size > 5000

    explain = run_dir / "05_explain"
    table = pd.read_parquet(explain / "attributions.parquet")
    assert len(table) > 0 and {"word", "attribution"} <= set(table.columns)
    assert (explain / "token_audit.csv").exists() and (explain / "hard_negatives.csv").exists()
    for figure in ("attributions", "top_tokens"):
        assert (explain / "figures" / f"{figure}.png").stat().st_size > 5000


@pytest.mark.notebooks
@pytest.mark.aws
def test_02_uploads_to_s3_and_03_submits_a_sagemaker_job(runs_root, s3_bucket):
    params = {**references.smoke_parameters(), "s3_uri": f"s3://{s3_bucket}/mlclf/smoke",
              "mode": "sagemaker", "role": "arn:aws:iam::123456789012:role/SageMakerRole",
              "default_bucket": s3_bucket}
    # 04 needs the model locally; a SageMaker-trained model lives in S3, so stop after 03.
    run_dir = pipeline.run_pipeline(params, notebooks=NOTEBOOKS[:3], progress=False)

    channels = read_json(run_dir / "02_save_data" / "channels.json")
    assert channels == {split: f"s3://{s3_bucket}/mlclf/smoke/{split}"
                        for split in ("train", "validation", "test")}
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="mlclf/smoke/train/")["Contents"]}
    assert {"mlclf/smoke/train/label_map.json", "mlclf/smoke/train/state.json"} <= keys

    executed = json.loads((run_dir / "03_train.ipynb").read_text())
    outputs = "".join(str(o) for c in executed["cells"] for o in c.get("outputs", []))
    assert "training_job_name" in outputs
    jobs = boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    assert jobs, "no training job was recorded"
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
    uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert uris["train"] == channels["train"] and uris["validation"] == channels["validation"]
    assert not (run_dir / "03_train" / "model").exists()  # nothing trained locally
