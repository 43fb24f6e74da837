"""Generate docs/benchmarks.md from benchmarks/results/*.json. No number is typed by hand.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT  # noqa: E402
TITLES = {
    "quality": "Quality on the demo's test split: fine-tuned model, baselines, and the sweep's best",
    "held_out_pool": "The held-out pool: the demo rows the sample left out, a test ten times larger",
    "train_throughput": "Training throughput and validation macro-F1: the tutorial recipe, 03's, and each speed option",
    "bf16_quality": "bf16 autocast on the CPU: speed and validation macro-F1",
    "inference_speed": "Inference: Classifier (torch and ONNX Runtime) vs a transformers.pipeline loop",
    "explain_speed": "Explanations: seconds per (text, label) vs Captum's default recipe",
    "make_run_time": "`make run` from a fresh clone, install excluded: total and per stage",
    "long_documents": "Long documents: truncation vs overlapping windows (`long_text`)",
    "threshold_robustness": "Thresholds on small validation splits: validation vs test macro-F1 by procedure",
}
NOTES = {
    "threshold_robustness": (
        "Issue 12, item 6. No retraining: 03's model scores the demo run's validation and test "
        "splits once (the check columns in Settings compare with 04's saved test probabilities "
        "and thresholds). For each validation set, the whole split or a random subsample "
        "(*seeds* of them), 04's Platt calibration is fitted on it, each procedure tunes the "
        "thresholds on it, and the whole test split is scored. *Shrinkage k* moves each tuned "
        "threshold toward the shared one by k/(support+k) (04's `threshold_shrinkage`); "
        "*smoothed F1, h* takes the top of each label's F1 curve averaged over a Gaussian "
        "window of sd h; *global only* is one threshold for every label. Validation macro-F1 "
        "is measured on the texts the thresholds were tuned on, over the labels that have "
        "positives there, so on a subsample it averages fewer (and easier) labels than test "
        "and the gap is not a pure overfitting measure; *test vs default* is the paired "
        "difference in test macro-F1 with 04's default on the same subsample (mean and sd "
        "over seeds), the column that says which procedure generalises."
    ),
    "long_documents": (
        "The demo run's cleaned texts, labels and split, tokenized again at a short "
        "`max_length` where truncation cuts most texts, then 02-04 once per 01 `long_text` "
        "setting with 03's defaults. *chunks* reads every token as overlapping windows (02 "
        "makes a training row per window, with the text's labels); 04 scores one row per text, "
        "its probability the max over its windows, with thresholds tuned on validation as "
        "usual. The time columns are the cost: 03 trains on every window, 04 predicts them."
    ),
    "held_out_pool": (
        "The larger test issues 13 and 14 ask for. 01 samples `sample_size` rows of the demo "
        "source (seeded), so its test split has only a few hundred texts and a macro-F1 "
        "difference there carries about ±2 points of noise. The rows the sample did not take "
        "were never seen by the run: `build_pool` draws the run's sample again from its own "
        "preprocess_config.json (checked to be the run's rows), keeps the rest, cleans them "
        "with the run's cleaning, normalises labels by its policy and cuts them to its label "
        "map, and drops rows left without labels or whose text is a text of the run (each "
        "drop counted under *pool* in Settings). Every model is scored on that pool and on the "
        "run's test split side by side: the bundle's torch model and its ONNX fp32 and int8 "
        "files at the bundle's calibration and tuned thresholds (an int8 file the bundle "
        "lacks is quantized as 04 makes it, and its row says so), and TF-IDF + LR fitted on "
        "the run's train split with thresholds tuned on validation as 04's comparison does. "
        "The second table gives each paired difference in points with a bootstrap 95% "
        "interval over texts (the same texts resampled for both models): *meets bar* is "
        "issue 13's (interval's lower end at least +5 macro points, micro at least equal) and "
        "issue 14's (int8 within 0.5 macro points of fp32)."
    ),
    "quality": (
        "All rows are scored on the same test split. The fine-tuned model and the TF-IDF + LR "
        "baseline use per-class thresholds tuned on validation, and so does the *frozen "
        "encoder + LR* (the base encoder's mean-pooled embeddings, one forward pass per text, "
        "never fine-tuned: the gap to it is what fine-tuning buys); *plain BCE @ 0.5* is the "
        "same encoder trained without class weights and read at 0.5, as "
        "`problem_type=\"multi_label_classification\"` gives it, either reused from the sweep "
        "(*from sweep*) or trained on a budget (the column says which fraction of 03's "
        "training). The sweep's best is the "
        "combination with the highest validation macro-F1; the full sweep follows."
    ),
    "train_throughput": (
        "Each variant trains MiniLM for the same steps on the same rows of the demo's train "
        "split (see Settings), and is scored on the whole validation split, so its speed and "
        "its quality come from one training. *Real tokens* excludes padding; *padding "
        "efficiency* is real tokens / all tokens fed; speed-ups are against the tutorial row, "
        "by the wall time of the training steps (evaluations and saves left out, compilation "
        "included: *first step s* shows it apart) and by CPU seconds of the process and its "
        "compiler children (comparable when other work shares the machine). *Quality holds* "
        "compares validation macro-F1 at 0.5 with 03's recipe before issue 14 (`bf16` row): "
        "within max(1 point, seed noise), seed noise being that row trained again with "
        "another seed when Settings show one."
    ),
    "bf16_quality": (
        "The same seeded training twice, fp32 then bf16 autocast. bf16 is kept as the default "
        "(`--bf16 auto`) only because it is faster here at no cost in macro-F1."
    ),
    "inference_speed": (
        "Texts per second on the demo's test split, same bundle, same threads, measured in one "
        "run. Every row's probabilities, the pipeline's too, go through the bundle's "
        "calibration, so macro-F1 is read at its tuned thresholds on one scale. The ONNX rows "
        "run `Classifier(backend=\"onnx\")` on exports made from the bundle by "
        "`serving.onnx_export`; *meets bar* is issue 14's: at least 3x the baseline within 0.5 "
        "macro-F1 points. 04 ships `model.onnx` (fp32) and `model.int8.onnx` only when int8 "
        "holds test macro-F1 within 0.5 points of fp32 (on validation the tuned thresholds sit on "
        "its own scores, so any shift flips texts)."
    ),
    "explain_speed": (
        "The same (text, label) pairs for every row, measured in one run, on the demo run's "
        "test texts; *labels per text* in Settings is how many labels each text is asked "
        "about: with `--true-labels` each text's own labels, the question \"why these "
        "labels?\" a user asks of a prediction, so the label mix is the demo's as the length "
        "mix is (05 also asks several when a text is a mistake for several classes). *Batched*: a "
        "text's labels share its forward passes and texts of similar length are packed "
        "together. The Explainer's default adds the *transplanted* rule "
        "(`mlclf_utils/explain/quadrature.py`): Captum's Gauss-Legendre nodes moved by an "
        "arcsine map toward the middle of the path, where a fine-tuned model's probability "
        "turns, so fewer steps reach the same delta; its attributions differ from the "
        "baseline's by the baseline's own integration error as well as its. *Meets bar* is "
        "issue 14's: at least 2x the baseline with median and max |delta| no larger than its."
    ),
    "make_run_time": (
        "HEAD cloned into a temporary folder and `make run`'s steps timed there with the "
        "installed venv (or `--install`: `make install` untimed, then `make run`): the demo "
        "data, then the five stages, whose seconds come from the run's manifest. *complete* "
        "is false for a quick check with parameters overridden or stages left out."
    ),
}


ORDER = ("quality", "held_out_pool", "make_run_time", "train_throughput", "bf16_quality",
         "inference_speed", "explain_speed", "long_documents", "threshold_robustness")

# benchmarks/recipes.py writes one JSON per (recipe, seed, run) here; rendered as one table.
RECIPES_DIR = RESULTS / "recipes"
RECIPES_TITLE = "Recipes tried for issue 13"
# Issue 13's bar: macro-F1 at least 5 points above TF-IDF + LR (the bootstrap interval's lower
# end clearing it), micro-F1 at least equal.
BAR_MACRO_POINTS, BAR_MICRO_POINTS = 5.0, 0.0
RECIPES_NOTE = (
    "Every recipe `benchmarks/recipes.py` measured, losers included: 03's trainer with the "
    "hyperparameters shown, scored as 04 scores a model (Platt calibration and per-label "
    "thresholds tuned on validation), against TF-IDF + LR with the same thresholds procedure "
    "on the same test split. *Margin* is the test macro-F1 difference in points with a paired "
    "bootstrap 95% interval over test texts; *meets bar* asks issue 13's question (interval's "
    "lower end at least {macro:+.0f} macro points, micro margin at least {micro:+.0f}). The "
    "options `pooling`, `head_init`, `freeze_embeddings`, `lr_scheduler_type`, "
    "`layer_lr_decay` and `attention_dropout` were added for issue 13. *lpft* is mean pooling "
    "with the head first fitted as a linear probe on frozen mean-pooled train features, then "
    "full fine-tuning at one rate; *cls* is the recipe before it (a random head on the CLS "
    "pooler at its own rate). 03's default is *lpft-lr2e-4-ad0* (LP-FT at 2e-4 without "
    "attention dropout) on the run named `ml256-val20` (01's defaults since). "
    "A run named `full` is a run of all usable rows of the demo source instead of the demo's "
    "sample (the `-e1.2` recipes give it about the demo's three epochs' steps). A run named "
    "`ml256` is the demo's run with texts cut at 256 tokens instead of 128, made by `python -m "
    "mlclf_utils run --to 02 -p max_length 256 --run-dir runs-exp/ml256` (256 is 01's "
    "default since; a run with a timestamp name before it cut at 128), and `ml256-val20` the "
    "same with `-p split_proportions \"[0.7, 0.2, 0.1]\"`: twice the validation texts for "
    "calibration and thresholds, an eighth fewer train texts, the same pool. The *pool* "
    "columns (`--pool`) repeat the comparison on the held-out pool, the demo rows the run's "
    "sample never took (see the held-out pool section), where the interval is about a quarter "
    "as wide.\n\n"
    "**Train seconds are not comparable between rows:** each training ran on one torch "
    "thread while other work shared the machine; the 1-minute load average before and after "
    "each training is printed beside it, and a load above the core count means the recipe "
    "waited for the CPU. Quality columns are unaffected."
)


def table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None or value != value:  # None or NaN
        return ""
    return str(value)


def _machine_section(results: list[dict]) -> tuple[list[str], bool]:
    """The machine once, when every result shares it (the usual case); else per section."""
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for r in results}
    lines = ["", "## Machine", ""]
    if len(machines) == 1:
        machine = results[0].get("machine", {})
        lines.append("Every result below was measured on this machine: "
                     + ", ".join(f"{k} = `{v}`" for k, v in machine.items()) + ".")
    else:
        lines.append("The results were measured on different machines; each section names its own.")
    return lines, len(machines) == 1


def recipe_rows(results: list[dict]) -> list[dict]:
    """One row per recipes.py result: demo-sized runs first, then by recipe and seed."""
    rows = []
    for r in sorted(results, key=lambda r: (r["test_texts"], r["run"], r["recipe"], r["seed"])):
        margin, tfidf = r["macro_vs_tfidf"], r["tfidf_lr"]
        meets = (margin["ci95_low"] >= BAR_MACRO_POINTS
                 and r["micro_vs_tfidf_points"] >= BAR_MICRO_POINTS)
        before, after = r["load_average_before"][0], r["load_average_after"][0]
        rows.append({
            "recipe": r["recipe"], "seed": r["seed"],
            "run (test texts)": f"{r['run']} ({r['test_texts']})",
            "macro-F1": f"{r['model']['macro_f1']:.3f}",
            "micro-F1": f"{r['model']['micro_f1']:.3f}",
            "TF-IDF macro / micro": f"{tfidf['macro_f1']:.3f} / {tfidf['micro_f1']:.3f}",
            "macro margin, points [95% CI]": (f"{margin['margin_points']:+.1f} "
                                              f"[{margin['ci95_low']:+.1f}, {margin['ci95_high']:+.1f}]"),
            "micro margin, points": f"{r['micro_vs_tfidf_points']:+.1f}",
            "meets bar": "yes" if meets else "no",
            **pool_cells(r.get("pool")),
            "train s": f"{r['train_seconds']:.0f}",
            "wall s (probe, evaluations)": f"{r['train_wall_seconds']:.0f}",
            "threads": r.get("threads") or "all",
            "load 1-min before → after": f"{before} → {after}",
            "hyperparameters": "`" + ", ".join(f"{k}={v}" for k, v in r["hyperparameters"].items()) + "`",
            "command": f"`{r['command']}`",
        })
    return rows


def pool_cells(pool: dict | None) -> dict:
    """The held-out pool's columns of a recipe row (``recipes.py --pool``); blank without it."""
    if not pool:
        return {"pool texts": None, "pool macro margin [95% CI]": None,
                "pool micro margin": None, "pool meets bar": None}
    margin = pool["macro_vs_tfidf"]
    meets = (margin["ci95_low"] >= BAR_MACRO_POINTS
             and pool["micro_vs_tfidf_points"] >= BAR_MICRO_POINTS)
    return {"pool texts": pool["texts"],
            "pool macro margin [95% CI]": (f"{margin['margin_points']:+.1f} "
                                           f"[{margin['ci95_low']:+.1f}, {margin['ci95_high']:+.1f}]"),
            "pool micro margin": f"{pool['micro_vs_tfidf_points']:+.1f}",
            "pool meets bar": "yes" if meets else "no"}


def recipes_section(shared_machine: dict | None) -> list[str]:
    """The issue-13 recipes table, or nothing when recipes.py has not run."""
    results = [json.loads(p.read_text()) for p in sorted(RECIPES_DIR.glob("*.json"))]
    if not results:
        return []
    lines = ["", f"## {RECIPES_TITLE}", "",
             RECIPES_NOTE.format(macro=BAR_MACRO_POINTS, micro=BAR_MICRO_POINTS), ""]
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for r in results}
    if len(machines) == 1 and results[0].get("machine") != shared_machine:
        lines += ["Machine: " + ", ".join(f"{k} = `{v}`" for k, v in results[0]["machine"].items())
                  + ".", ""]
    elif len(machines) > 1:
        lines += ["These results were measured on more than one machine.", ""]
    return lines + [table(recipe_rows(results))]


def render() -> str:
    results = [json.loads(p.read_text()) for p in RESULTS.glob("*.json")]
    results.sort(key=lambda r: (ORDER.index(r["benchmark"]) if r.get("benchmark") in ORDER
                                else len(ORDER), r.get("benchmark", "")))
    parts = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`benchmarks/run_all.py`, then `benchmarks/report.py` over "
        "`benchmarks/results/*.json`). Every number below comes from the command printed with "
        "it. `runs/<run-id>` in a command is a demo run made by "
        "`python -m mlclf_utils run --to 04`, and `runs/sweeps/<sweep-id>` the sweep made by "
        "`python -m mlclf_utils sweep --base runs/<run-id> --grid "
        "pos_weight_strategy=none,ratio,sqrt,damped --jobs 2`; `make bench` makes both and then "
        "runs every command below.",
    ]
    machine_lines, single_machine = _machine_section(results)
    parts += machine_lines
    for result in results:
        name = result.get("benchmark")
        parts += ["", f"## {TITLES.get(name, name)}", ""]
        if name in NOTES:
            parts += [NOTES[name], ""]
        parts += [f"Command: `{result['command']}`", ""]
        hidden = {"benchmark", "command", "rows", "tables"} | ({"machine"} if single_machine else set())
        settings = {k: v for k, v in result.items() if k not in hidden}
        parts += ["Settings: " + ", ".join(f"{k} = `{v}`" for k, v in settings.items()), ""]
        parts.append(table(result["rows"]))
        for title, rows in (result.get("tables") or {}).items():
            parts += ["", f"### {title}", "", table(rows)]
    parts += recipes_section(results[0].get("machine") if single_machine and results else None)
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    target = ROOT / "docs" / "benchmarks.md"
    target.write_text(render())
    print(f"wrote {target}")
