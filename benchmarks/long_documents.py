"""Long documents: truncation against overlapping windows, at a cut where truncation bites.

    python benchmarks/long_documents.py --run-dir runs/<run-id> --work-dir /tmp/mlclf-long \
        [--max-length 64] [--stride 32] [--rows 0] [--epochs 3] [--max-steps -1]

Takes the demo run's 01 table (its cleaned texts, labels and split; the run is only read),
tokenizes it again at ``--max-length`` once per ``long_text`` setting (``truncate``, then
``chunks`` with ``--stride``), and runs 02, 03 and 04 on each in a run directory of its own
under ``--work-dir``, with 03's defaults and the run's own model. Reports test macro- and
micro-F1 at the tuned thresholds (one row per text either way), the windows trained on, and
the seconds 03 and 04 took. Writes benchmarks/results/long_documents.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from common import RESULTS, write_result  # noqa: E402

SETTINGS = ("truncate", "chunks")


def sample(table, label_map, rows: int, seed: int):
    """About ``rows`` texts in each split's share (a quick check), keeping the labels that still
    have a train positive (pos_weight needs one); what that leaves out is printed."""
    from mlclf_utils.data.label_map import LabelMap

    if rows <= 0 or rows >= len(table):
        return table, label_map
    table = table.groupby("split").sample(frac=rows / len(table), random_state=seed).sort_index()
    in_train = {x for labels in table.loc[table["split"] == "train", "labels"] for x in labels}
    kept = [x for x in label_map.labels if x in in_train]
    table = table.assign(labels=[[x for x in labels if x in in_train] for labels in table["labels"]])
    empty = table["labels"].map(len) == 0
    print(f"sample of {len(table)} texts: {len(label_map) - len(kept)} labels without a train "
          f"positive left out, {int(empty.sum())} texts left without labels dropped", flush=True)
    return table[~empty], LabelMap(kept)


def prepare(base_run: Path, run_dir: Path, long_text: str, args) -> dict:
    """01 again from the base run's table at the new cut: the windows and the counts."""
    import dataclasses

    from mlclf_utils.data import tokenization
    from mlclf_utils.data.windows import WindowSettings
    from mlclf_utils.modeling import encoders
    from mlclf_utils.stages import preprocess

    table, label_map, config = preprocess.load_artifacts(base_run)
    table, label_map = sample(table, label_map, args.rows, config.get("seed", 42))
    known = {f.name for f in dataclasses.fields(preprocess.Config)}
    config = preprocess.Config.from_parameters(**{
        **{k: v for k, v in config.items() if k in known},
        "max_length": args.max_length, "long_text": long_text, "window_stride": args.stride})
    tokenizer = encoders.load_tokenizer(config.model_name)
    table, tokens = tokenization.tokenize_table(
        table[["source_id", "text", "labels", "split"]], tokenizer, max_length=args.max_length,
        progress=False, windows=WindowSettings.from_config(config.to_dict()))
    preprocess.save_artifacts(run_dir, table, label_map, config, {"tokens": tokens})
    return tokens


def measure(base_run: Path, work_dir: Path, long_text: str, args) -> dict:
    from mlclf_utils.stages import evaluate, save_data, train

    run_dir = work_dir / f"{long_text}-{args.max_length}"
    tokens = prepare(base_run, run_dir, long_text, args)
    save_data.run(run_dir, save_data.Config())
    from mlclf_utils.data import dataset

    stats = dataset.read_split_json(save_data.split_dir(run_dir, "train"), "class_stats.json")
    train_windows = len(dataset.load_split(save_data.split_dir(run_dir, "train"))[0])
    start = time.perf_counter()
    train.run(run_dir, train.Config(teaching=False, epochs=args.epochs, max_steps=args.max_steps))
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluate.run(run_dir, evaluate.Config.from_params({"plain_baseline": False,
                                                       "frozen_baseline": False}))
    evaluate_s = time.perf_counter() - start
    report = evaluate.read_report(run_dir)
    windows = tokens.get("windows") or {}
    row = {
        "long_text": long_text if long_text == "truncate" else f"chunks (stride {args.stride})",
        "max_length": args.max_length,
        "texts truncated at this cut": f"{tokens['truncated_share']:.1%}",
        "train texts": stats["rows"]["train"],
        "train rows (windows)": train_windows,
        "texts with >1 window": windows.get("texts_with_several_windows", 0),
        "test macro-F1": round(report["test_tuned"]["macro_f1"], 4),
        "test micro-F1": round(report["test_tuned"]["micro_f1"], 4),
        "validation macro-F1": round(report["validation_tuned"]["macro_f1"], 4),
        "03 train s": round(train_s, 1),
        "04 evaluate s": round(evaluate_s, 1),
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a demo run with 01 done (only read)")
    parser.add_argument("--work-dir", required=True,
                        help="where the two runs go; outside the checkout, must not exist")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--rows", type=int, default=0, help="0: every text of the run")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the epochs decide")
    parser.add_argument("--out", default=str(RESULTS / "long_documents.json"))
    args = parser.parse_args(argv)

    base_run, work_dir = Path(args.run_dir), Path(args.work_dir)
    if work_dir.exists():
        raise SystemExit(f"{work_dir} exists; give a new folder (runs are never overwritten)")
    rows = [measure(base_run, work_dir, long_text, args) for long_text in SETTINGS]
    reference = rows[0]
    for row in rows[1:]:
        row["macro-F1 vs truncate, points"] = round(
            100 * (row["test macro-F1"] - reference["test macro-F1"]), 2)
        row["03 time vs truncate"] = f"x{row['03 train s'] / max(reference['03 train s'], 1e-9):.2f}"
        row["04 time vs truncate"] = (
            f"x{row['04 evaluate s'] / max(reference['04 evaluate s'], 1e-9):.2f}")
    write_result("long_documents", argv, {
        "run": base_run.name, "texts_used": args.rows or "all", "epochs": args.epochs,
        "max_steps": args.max_steps, "aggregation": "max over a text's windows",
    }, rows, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
