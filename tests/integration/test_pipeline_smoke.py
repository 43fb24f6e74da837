"""Stages 01-05 end to end with papermill and the smoke parameters; S3 and SageMaker on moto."""

import json

import boto3
import pandas as pd
import pytest

import references
from mlclf_utils.artifacts import read_json
from mlclf_utils.runner import parameters, pipeline

NOTEBOOKS = parameters.stage_notebooks()[:5]


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
    assert metrics["global_step"] == 8
    for figure in ("bce_stability", "pos_weight_effect", "pos_weight_tradeoff", "pos_weights",
                   "training_curves"):
        assert (run_dir / "03_train" / "figures" / f"{figure}.png").stat().st_size > 5000

    evaluation = run_dir / "04_evaluate"
    report = read_json(evaluation / "report.json")
    assert set(report["comparison"]) >= {"fine-tuned, tuned thresholds", "TF-IDF + LR, tuned thresholds",
                                         "frozen encoder + LR, tuned thresholds",
                                         "plain BCE @ 0.5 (budget: 10% of 03's training)"}
    assert report["test_tuned"]["n_labels"] == 10
    # 03's LP-FT fits the head as a linear probe on MiniLM's vectors before its eight steps, so
    # the smoke model already knows these keyword labels (measured: macro-F1 0.95 at 0.5, 0.93
    # with tuned thresholds, macro ROC-AUC 0.99); a model that learned nothing, or a shuffled
    # label map, sits near chance (ROC-AUC 0.5). The same data must be learnable by TF-IDF + LR
    # too (0.99 measured).
    assert report["test_at_0.5"]["macro_f1"] >= 0.6
    assert report["test_tuned"]["macro_f1"] >= 0.6
    assert report["test_tuned"]["macro_roc_auc"] >= 0.9
    assert report["comparison"]["TF-IDF + LR, tuned thresholds"]["macro_f1"] >= 0.9
    table = pd.read_parquet(evaluation / "misclassifications.parquet")
    assert len(table) == 40 and {"false_positives", "false_negatives"} <= set(table.columns)
    from mlclf_utils.serving.predict import Classifier

    classifier = Classifier.load(evaluation / "bundle")
    thresholds = read_json(evaluation / "thresholds.json")
    assert list(classifier.labels) == thresholds["labels"]
    predictions = classifier.predict(["A Qt front end for the shell", "Plays music and video"])
    assert len(predictions) == 2 and set(predictions[0]["probabilities"]) == set(classifier.labels)
    assert classifier.calibration is not None and classifier.calibration["method"] == "platt"
    for figure in ("f1_vs_threshold", "per_class_f1", "pr_curves", "confusion_counts",
                   "reliability", "reliability_raw", "label_confusion"):
        assert (evaluation / "figures" / f"{figure}.png").stat().st_size > 5000

    explain = run_dir / "05_explain"
    table = pd.read_parquet(explain / "attributions.parquet")
    assert len(table) > 0 and {"word", "attribution"} <= set(table.columns)
    assert (explain / "token_audit.csv").exists() and (explain / "hard_negatives.csv").exists()
    for figure in ("attributions", "top_tokens"):
        assert (explain / "figures" / f"{figure}.png").stat().st_size > 5000


def _tar_folder(folder, bucket: str, key: str) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.fixture(scope="module")
def s3_base(moto_server, tmp_path_factory):
    """01-02 with the channels uploaded to S3 (moto), and what a training container would have
    written for them: train.py itself, into SM_MODEL_DIR/SM_OUTPUT_DATA_DIR-like folders.

    moto runs no job, so each test puts these as the job's tarballs where SageMaker writes them."""
    import uuid

    from mlclf_utils.modeling import train

    bucket = f"mlclf-smoke-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCLF_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        smoke = references.smoke_parameters()
        params = {**smoke, "s3_uri": f"s3://{bucket}/mlclf/smoke"}
        base = pipeline.run_pipeline(params, notebooks=NOTEBOOKS, last="02_save_data",
                                     progress=False)
        container = tmp_path_factory.mktemp("opt-ml")
        hyper = {k: smoke[k] for k in ("model_name", "epochs", "batch_size", "max_steps",
                                       "eval_steps", "learning_rate", "max_length")}
        train.run_training(run_dir=str(base), model_dir=str(container / "model"),
                           output_data_dir=str(container / "output"), **hyper)
    return {"base": base, "bucket": bucket, "params": params, "container": container}


def _place_job_output(s3_base: dict, job_name: str) -> None:
    container, bucket = s3_base["container"], s3_base["bucket"]
    _tar_folder(container / "model", bucket, f"{job_name}/output/model.tar.gz")
    _tar_folder(container / "output", bucket, f"{job_name}/output/output.tar.gz")


@pytest.mark.notebooks
@pytest.mark.aws
@pytest.mark.slow
def test_a_sagemaker_round_trip_per_sweep_combination_and_04_runs_unchanged_on_each(
        runs_root, s3_base, no_real_aws):
    """02 uploaded the channels; each combination's 03 submits a job and waits for it, the
    model comes back into 03_train, and 04 evaluates it here (one test for both, to keep
    make test short: a sweep combination is exactly `run --resume base --from 03 --to 04`)."""
    from mlclf_utils.runner import sweep, sweep_launch

    first, bucket = s3_base["base"], s3_base["bucket"]
    channels = read_json(first / "02_save_data" / "channels.json")
    assert channels == {split: f"s3://{bucket}/mlclf/smoke/{split}"
                        for split in ("train", "validation", "test")}
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="mlclf/smoke/train/")["Contents"]}
    assert {"mlclf/smoke/train/label_map.json", "mlclf/smoke/train/state.json"} <= keys
    for index in (1, 2):
        _place_job_output(s3_base, f"mlclf-sweep-test-{index:02d}")
    grid = {"pos_weight_strategy": ["none", "sqrt"]}
    sweep_dir = sweep_launch.run_sweep(grid, params={"role": ROLE, "default_bucket": s3_base["bucket"]},
                                       base=s3_base["base"], jobs=2, progress=False,
                                       backend="sagemaker", job_prefix="mlclf-sweep-test")
    table = pd.read_csv(sweep_dir / sweep.COMPARISON_FILE, index_col="combination")
    assert list(table["status"]) == ["ok", "ok"]
    assert list(table["training_job"]) == ["mlclf-sweep-test-01", "mlclf-sweep-test-02"]
    assert table["test_macro_f1"].notna().all()
    sagemaker = boto3.client("sagemaker")
    for index, strategy in ((1, "none"), (2, "sqrt")):
        job = sagemaker.describe_training_job(TrainingJobName=f"mlclf-sweep-test-{index:02d}")
        assert json.loads(job["HyperParameters"]["pos_weight_strategy"]) == strategy
    info = read_json(sweep_dir / sweep.SWEEP_FILE)
    assert info["backend"] == "sagemaker"

    run_dir = sweep_dir / table.index[0]
    manifest = read_json(run_dir / "manifest.json")
    assert [s["status"] for s in manifest["stages"]] == ["reused", "reused", "ok", "ok"]
    job = sagemaker.describe_training_job(TrainingJobName="mlclf-sweep-test-01")
    uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert uris["train"] == channels["train"] and uris["validation"] == channels["validation"]
    trained = s3_base["container"] / "model"
    model = run_dir / "03_train" / "model"
    assert sorted(p.name for p in model.iterdir()) == sorted(p.name for p in trained.iterdir())
    assert (run_dir / "03_train" / "figures" / "training_curves.png").exists()
    assert not (run_dir / "03_train" / "checkpoints").exists()  # nothing trained locally
    assert read_json(run_dir / "04_evaluate" / "report.json")["test_tuned"]["n_labels"] == 10


def test_a_sagemaker_sweep_needs_s3_channels(tmp_path):
    from mlclf_utils.errors import ParameterError
    from mlclf_utils.runner import sweep_launch

    with pytest.raises(ParameterError, match="s3_uri"):
        sweep_launch.run_sweep({"pos_weight_strategy": ["none"]}, params={}, backend="sagemaker")
    with pytest.raises(ParameterError, match="--backend"):
        sweep_launch.run_sweep({"pos_weight_strategy": ["none"]}, backend="cloud")
