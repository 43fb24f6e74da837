"""What every benchmark result records: the machine, the exact command, and where the JSON goes."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    import torch

    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "memory_gib": memory, "os": platform.platform(terse=True),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "gpu": torch.cuda.is_available()}


def command(script: str, argv: list[str] | None) -> str:
    """The command line that reproduces a result, with paths relative to the checkout."""
    args = sys.argv[1:] if argv is None else list(argv)
    args = [a.replace(str(ROOT) + os.sep, "") for a in map(str, args)]
    return shlex.join(["python", f"benchmarks/{script}.py", *args])


def write_result(name: str, argv: list[str] | None, settings: dict, rows: list[dict],
                 out: str | Path, *, tables: dict[str, list[dict]] | None = None) -> Path:
    """One JSON per benchmark, in the shape benchmarks/report.py renders."""
    result = {"benchmark": name, "command": command(name, argv), **settings, "rows": rows}
    if tables:
        result["tables"] = tables
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "machine": machine()}, indent=2) + "\n")
    print(f"wrote {out}")
    return out
