"""Command line: ``python -m mlclf_utils {run,sweep,apt-lists,demo-data,predict,export-onnx}``."""

from __future__ import annotations

import argparse
import json
import sys

from mlclf_utils.errors import MlclfError


def _params(args) -> dict:
    """--config first, then each -p on top of it, in the order given."""
    from mlclf_utils.runner.parameters import all_parameter_specs, load_params_file, typed_value

    params = load_params_file(args.config)
    if args.param:
        specs = all_parameter_specs()
        params.update({name: typed_value(name, value, specs) for name, value in args.param})
    return params


def _predict(args) -> None:
    """TEXT arguments or --input FILE in; CSV or JSONL out, to stdout or --output.

    Everything that can be checked from the arguments is checked before the model loads.
    """
    from mlclf_utils.errors import DataError, ParameterError
    from mlclf_utils.serving.predict import Classifier
    from mlclf_utils.serving.predict_io import (check_output, in_file, output_format,
                                                read_text_rows, write_predictions)

    if args.texts and args.input:
        raise ParameterError("--input", args.input, "give TEXT arguments or --input, not both")
    if not args.texts and not args.input:
        raise ParameterError("TEXT", None, "give texts to classify, or --input FILE")
    fmt = output_format(args.output, args.format)
    if args.output:
        check_output(args.output, overwrite=args.overwrite,
                     inputs={"--input": args.input, "--model": args.model})
    if args.input:
        texts, rows, skipped = read_text_rows(args.input, text_column=args.text_column)
        if skipped:
            print(f"skipped {skipped} blank line(s) of {args.input}", file=sys.stderr)
    else:
        texts, rows = args.texts, None
    classifier = Classifier.load(args.model, quantize=args.quantize, backend=args.backend,
                                 threads=args.threads)
    try:
        predictions = classifier.predict(texts, batch_size=args.batch_size,
                                         progress=bool(args.input) and not args.no_progress)
    except DataError as exc:
        if rows is None:
            raise
        column = None if args.input.lower().endswith(".txt") else args.text_column
        raise in_file(exc, args.input, rows, column) from None
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            write_predictions(texts, predictions, classifier.labels, out, fmt)
        print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    else:
        write_predictions(texts, predictions, classifier.labels, sys.stdout, fmt)


def _export_onnx(args) -> None:
    """ONNX files into an existing bundle, listed in its bundle.json."""
    from mlclf_utils.serving.bundle import add_onnx
    from mlclf_utils.serving.bundle_reader import read_bundle

    root = add_onnx(args.bundle, int8=args.int8, overwrite=args.overwrite, threads=args.threads)
    section = read_bundle(root).manifest["onnx"]
    for facts in (section["fp32"], section["int8"]):
        if facts:
            print(f"wrote {root / facts['file']} ({facts['precision']})", file=sys.stderr)
    if section["int8"]:
        print("int8 was not judged here: compare its macro-F1 with fp32 before relying on it "
              "(benchmarks/inference_speed.py, or 04_evaluate, which judges it on test)",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclf_utils", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the stage notebooks into a new runs/<run-id>/")
    run.add_argument("--config", help="YAML file of parameters")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="a parameter (value parsed as YAML)")
    run.add_argument("--from", dest="first", metavar="STAGE",
                     help="first stage to run (01..05 or its name); needs --resume after 01")
    run.add_argument("--to", dest="last", metavar="STAGE", help="last stage to run")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="take the earlier stages' artifacts and parameters from this run; "
                          "without --from, start at its first unfinished stage")
    run.add_argument("--run-dir", metavar="DIR",
                     help="write here (new or empty) instead of a new runs/<run-id>/")
    run.add_argument("--no-progress", action="store_true")

    sweep = sub.add_parser("sweep", help="run 03-04 once per combination of a parameter grid")
    sweep.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                       help="a parameter and its values; repeat for more (the product is run)")
    sweep.add_argument("--config", help="YAML file of parameters shared by every combination")
    sweep.add_argument("-p", "--param", nargs=2, action="append", default=[],
                       metavar=("NAME", "VALUE"), help="a shared parameter (value parsed as YAML)")
    sweep.add_argument("--base", metavar="RUN_DIR",
                       help="reuse this run's 01-02 outputs (default: run 01-02 once first)")
    sweep.add_argument("--backend", choices=("local", "sagemaker"), default="local",
                       help="sagemaker: train each combination as a SageMaker job (needs 02's "
                            "s3_uri, and role/default_bucket outside Studio); 04 runs here")
    sweep.add_argument("--job-prefix", metavar="NAME",
                       help="SageMaker job names are NAME-01, NAME-02, ... "
                            "(default mlclf-sweep-<sweep-id>)")
    sweep.add_argument("--jobs", type=int, default=1,
                       help="combinations trained at once, in separate processes")
    sweep.add_argument("--no-progress", action="store_true")

    sub.add_parser("apt-lists", help="make sure Debian's package lists with English descriptions "
                                     "are there; without them, fetch a copy into the user's cache "
                                     "(no root needed)")

    data = sub.add_parser("demo-data", help="build (or reuse) the cached debtags demo table")
    data.add_argument("--refresh", action="store_true")

    pred = sub.add_parser("predict", help="classify texts with a model bundle")
    pred.add_argument("--model", required=True, metavar="DIR", help="a bundle folder (04's bundle)")
    pred.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    pred.add_argument("--input", metavar="FILE",
                      help=".txt (one text per line), .csv, .tsv, .jsonl or .parquet")
    pred.add_argument("--text-column", default="text", help="the text column of --input")
    pred.add_argument("--output", metavar="FILE",
                      help="write here instead of stdout; the folder must exist")
    pred.add_argument("--overwrite", action="store_true",
                      help="replace an existing --output file (never the --input file)")
    pred.add_argument("--no-progress", action="store_true",
                      help="no progress bar (shown on stderr for --input)")
    pred.add_argument("--format", choices=("csv", "jsonl"), default=None,
                      help="default: from the --output suffix (.csv), else jsonl")
    pred.add_argument("--batch-size", type=int, default=64)
    pred.add_argument("--quantize", action="store_true",
                      help="int8: torch quantizes the linear layers on load; onnx runs the "
                           "bundle's model.int8.onnx")
    pred.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                      help="onnx: ONNX Runtime on the bundle's model.onnx (same calibration "
                           "and thresholds)")
    pred.add_argument("--threads", type=int, default=None,
                      help="CPU threads for the model (default: the backend's own)")

    onnx = sub.add_parser("export-onnx", help="add model.onnx (ONNX Runtime) to an existing "
                                              "bundle and list it in its bundle.json")
    onnx.add_argument("bundle", metavar="BUNDLE", help="a bundle folder (04's bundle)")
    onnx.add_argument("--int8", action="store_true",
                      help="also model.int8.onnx (dynamic int8 matrix products, per channel), not judged here")
    onnx.add_argument("--overwrite", action="store_true",
                      help="replace ONNX files the bundle already holds")
    onnx.add_argument("--threads", type=int, default=None)

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from mlclf_utils.runner.pipeline import run_pipeline

            run_dir = run_pipeline(_params(args), first=args.first, last=args.last,
                                   resume=args.resume, run_dir=args.run_dir,
                                   progress=not args.no_progress)
            print(f"run finished: {run_dir}")
        elif args.command == "sweep":
            from mlclf_utils.runner.sweep import COMPARISON_FILE, load, summary
            from mlclf_utils.runner.sweep_launch import SweepFailed, parse_grid, run_sweep

            try:
                sweep_dir = run_sweep(parse_grid(args.grid), params=_params(args), base=args.base,
                                      jobs=args.jobs, progress=not args.no_progress,
                                      backend=args.backend, job_prefix=args.job_prefix)
            except SweepFailed as exc:
                if (exc.sweep_dir / COMPARISON_FILE).exists():
                    print(summary(load(exc.sweep_dir)[0]).to_string())
                raise
            print(summary(load(sweep_dir)[0]).to_string())
            print(f"sweep finished: {sweep_dir}")
        elif args.command == "apt-lists":
            from mlclf_utils.data.apt_lists import ensure_lists

            print(ensure_lists())
        elif args.command == "demo-data":
            from mlclf_utils.data.debtags import load_debtags

            table, report = load_debtags("default", refresh=args.refresh)
            facts = {k: v for k, v in report.items() if k != "label_counts"}
            print(json.dumps(facts, indent=2, default=str))
        elif args.command == "predict":
            _predict(args)
        elif args.command == "export-onnx":
            _export_onnx(args)
    except KeyboardInterrupt as exc:
        from mlclf_utils.runner.execute import RunInterrupted

        if isinstance(exc, RunInterrupted):
            print(exc, file=sys.stderr)
            return 130
        print("interrupted; the manifest records where each stage stopped", file=sys.stderr)
        return 130
    except MlclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
