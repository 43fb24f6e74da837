"""Command line: ``python -m mlclf_utils {run,demo-data,refresh-references}``."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import MlclfError


def _parse_value(text: str):
    """A -p value is YAML (so 3 is an int and [0.8, 0.1, 0.1] a list); never eval'd."""
    import yaml

    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclf_utils")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the stage notebooks into a new runs/<run-id>/")
    run.add_argument("--config", help="YAML file of parameters")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="a parameter (value parsed as YAML)")
    run.add_argument("--no-progress", action="store_true")

    data = sub.add_parser("demo-data", help="build (or reuse) the cached debtags demo table")
    data.add_argument("--refresh", action="store_true")

    sub.add_parser("refresh-references",
                   help="re-execute tests/notebooks/ references with configs/smoke.yaml")

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from .pipeline import load_params_file, run_pipeline

            params = load_params_file(args.config)
            params.update({name: _parse_value(value) for name, value in args.param})
            run_dir = run_pipeline(params, progress=not args.no_progress)
            print(f"run finished: {run_dir}")
        elif args.command == "demo-data":
            from .debtags import load_debtags

            table, report = load_debtags("default", refresh=args.refresh)
            summary = {k: v for k, v in report.items() if k != "label_counts"}
            print(json.dumps(summary, indent=2, default=str))
        elif args.command == "refresh-references":
            from .references import refresh_references

            for path in refresh_references():
                print(f"refreshed {path}")
    except MlclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
