"""The built-in demo data: Debian package descriptions labelled with their debtags.

The table is built on this machine from apt's own package lists (``Packages`` for the tags,
``Translation-en`` for the long descriptions, parsed by ``deb822``) and cached as Parquet. It
is never committed and never downloaded from a model or data hub: Debian's index is the
source, apt is the client.

Run ``python -m mlclf_utils.data.debtags`` to print the report that ``docs/demo_data.md`` quotes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from mlclf_utils.data import apt_lists, deb822
from mlclf_utils.errors import DataError, ParameterError, SetupError

# Bump when the table's content or layout changes, so old caches are not reused.
TABLE_FORMAT = 1
CACHE_PREFIX = "debtags-"

# Tags a description can reveal: what the package is for (use::), what it works with
# (works-with::), how the user meets it (interface::, network::, x11::, uitoolkit::). Rule: at
# least 100 tagged packages and a clear text signal; interface::x11, x11::application and
# works-with::image:raster left out as near-copies of interface::graphical and works-with::image.
# docs/demo_data.md explains the choice and quotes the figures.
DEFAULT_LABELS: tuple[str, ...] = (
    "interface::3d",
    "interface::commandline",
    "interface::daemon",
    "interface::graphical",
    "interface::shell",
    "interface::web",
    "network::client",
    "network::server",
    "network::service",
    "uitoolkit::gtk",
    "uitoolkit::ncurses",
    "uitoolkit::qt",
    "uitoolkit::sdl",
    "uitoolkit::wxwidgets",
    "uitoolkit::xlib",
    "use::checking",
    "use::compressing",
    "use::converting",
    "use::downloading",
    "use::editing",
    "use::gameplaying",
    "use::learning",
    "use::login",
    "use::monitor",
    "use::organizing",
    "use::playing",
    "use::scanning",
    "use::searching",
    "use::timekeeping",
    "use::viewing",
    "works-with::archive",
    "works-with::audio",
    "works-with::db",
    "works-with::file",
    "works-with::image",
    "works-with::mail",
    "works-with::network-traffic",
    "works-with::software:package",
    "works-with::software:source",
    "works-with::text",
    "works-with::video",
    "x11::applet",
    "x11::font",
)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$MLCLF_CACHE_DIR, else $XDG_CACHE_HOME/mlclf, else ~/.cache/mlclf."""
    if os.environ.get("MLCLF_CACHE_DIR"):
        return Path(os.environ["MLCLF_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "mlclf"
    return Path.home() / ".cache" / "mlclf"


def lists_fingerprint(files: Iterable[Path]) -> str:
    """Hash paths, sizes and mtimes, so a new `apt-get update` gives a new cache file."""
    h = hashlib.sha256(f"format={TABLE_FORMAT}".encode())
    for p in files:
        st = os.stat(p)
        h.update(f"\n{p}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _write_parquet_atomic(df: pd.DataFrame, target: Path) -> None:
    """Write to a temp file in the same directory, then rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache of public data need not be
        df.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cached(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    # Parquet gives numpy arrays back for list columns; the table contract is list[str].
    df["labels"] = [list(v) for v in df["labels"]]
    return df


def build_debtags_table(
    *, refresh: bool = False, cache_dir: str | Path | None = None, fetch_lists: bool = True
) -> pd.DataFrame:
    """Return every tagged package as (source_id, text, labels); built once, then cached.

    ``text`` is the short description, a newline and the raw long description (Debian's
    leading spaces and ``" ."`` kept: cleaning is ``mlclf_utils.data.cleaning``'s job). ``labels``
    holds all the package's debtags, sorted. Build figures are in ``df.attrs["build_stats"]``.
    When apt lacks the lists, ``fetch_lists`` fetches this user's copy first (no root needed).
    """
    try:
        packages, translations = apt_lists.discover_lists()
    except SetupError:
        if not fetch_lists:
            raise
        print(f"mlclf: apt lacks Debian's English descriptions; fetching them into "
              f"{apt_lists.user_apt_dir()} (no root needed, a few seconds)", file=sys.stderr)
        apt_lists.fetch_user_lists()
        packages, translations = apt_lists.discover_lists()
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    fingerprint = lists_fingerprint([*packages, *translations])
    path = directory / f"{CACHE_PREFIX}{fingerprint}.parquet"

    if path.exists() and not refresh:
        try:
            return _read_cached(path)
        except Exception as exc:  # a damaged cache is rebuilt, not fatal
            print(f"mlclf: rebuilding unreadable cache {path}: {exc}", file=sys.stderr)

    start = time.perf_counter()
    df = deb822.assemble_table(
        (apt_lists.read_list_lines(p) for p in packages),
        (apt_lists.read_list_lines(p) for p in translations),
    )
    stats = df.attrs["build_stats"]
    if stats["packages_tagged"] == 0:
        raise DataError(
            "no package in apt's lists carries debtags (a `Tag:` field); the demo needs "
            "Debian's archive (e.g. bookworm main), whose Packages lists include them",
            file=str(packages[0]),
            column="Tag",
        )
    stats["build_seconds"] = round(time.perf_counter() - start, 2)
    stats["lists"] = [str(p) for p in [*packages, *translations]]
    stats["fingerprint"] = fingerprint
    _write_parquet_atomic(df, path)
    # Older fingerprints belong to lists apt has since replaced; keep the cache dir small.
    for old in directory.glob(f"{CACHE_PREFIX}*.parquet"):
        if old != path:
            old.unlink(missing_ok=True)
    return df


# --------------------------------------------------------------------------- label sets


def is_excluded_tag(tag: str) -> bool:
    """True for tags that describe the tagging, not the package: special::*, *::TODO."""
    facet, _, value = tag.partition("::")
    return facet == "special" or value.startswith("TODO")


def resolve_label_set(label_set: str | Sequence[str], known: Iterable[str]) -> list[str]:
    """Turn "default", "all" or an explicit list into sorted tags; unknown tags are refused."""
    known = set(known)
    if isinstance(label_set, str):
        if label_set == "default":
            labels = list(DEFAULT_LABELS)
        elif label_set == "all":
            return sorted(t for t in known if not is_excluded_tag(t))
        else:
            raise ParameterError(
                "label_set",
                label_set,
                'expected "default", "all" or a list of debtags such as ["use::editing"]',
            )
    else:
        labels = list(label_set)
        bad = [t for t in labels if not isinstance(t, str)]
        if bad:
            raise ParameterError("label_set", label_set, f"tags must be strings; got {bad}")
        if not labels:
            raise ParameterError("label_set", label_set, "the list of tags is empty")
    unknown = sorted(set(labels) - known)
    if unknown:
        raise ParameterError(
            "label_set",
            label_set,
            f"unknown tag(s) {unknown}: no tagged package carries them",
        )
    return sorted(set(labels))


def restrict_labels(
    table: pd.DataFrame, label_set: str | Sequence[str] = "default"
) -> tuple[pd.DataFrame, dict]:
    """Keep only the chosen tags on each row; rows left without a label are dropped, counted.

    ``n_packages_tagged`` in the report is the number of rows of the full table given.
    """
    known = {t for labels in table["labels"] for t in labels}
    chosen = resolve_label_set(label_set, known)
    keep = set(chosen)
    restricted = [[t for t in labels if t in keep] for labels in table["labels"]]
    mask = [bool(r) for r in restricted]
    out = table.loc[mask, ["source_id", "text"]].reset_index(drop=True)
    out["labels"] = [r for r in restricted if r]

    counts = Counter(t for labels in out["labels"] for t in labels)
    ordered = dict(sorted(((t, counts.get(t, 0)) for t in chosen), key=lambda kv: (-kv[1], kv[0])))
    present = [c for c in ordered.values() if c]
    # A lone "." is Debian's paragraph marker, not a word.
    words = [sum(1 for w in text.split() if w != ".") for text in out["text"]]
    report = {
        "label_set": label_set if isinstance(label_set, str) else "explicit",
        "n_packages_tagged": int(len(table)),
        "n_rows_kept": int(len(out)),
        "n_rows_dropped_no_label": int(len(table) - len(out)),
        "n_labels": len(chosen),
        "labels_without_rows": [t for t, c in ordered.items() if c == 0],
        "label_count_min": min(present) if present else 0,
        "label_count_max": max(present) if present else 0,
        "imbalance_ratio": round(max(present) / min(present), 2) if present else None,
        # What a 4,000-row sample holds of the rarest label, if sampled in proportion.
        "rarest_label_rows_per_4000": (
            round(min(present) * 4000 / len(out), 1) if present and len(out) else 0.0
        ),
        "median_labels_per_row": (
            float(statistics.median(len(r) for r in out["labels"])) if len(out) else 0.0
        ),
        "median_words_per_text": float(statistics.median(words)) if words else 0.0,
        "label_counts": ordered,
    }
    out.attrs = {"build_stats": dict(table.attrs.get("build_stats", {})), "label_names": chosen}
    return out, report


def load_debtags(
    label_set: str | Sequence[str] = "default",
    *,
    refresh: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The demo source table for a label set, plus a report of what was kept and dropped."""
    table = build_debtags_table(refresh=refresh, cache_dir=cache_dir)
    out, report = restrict_labels(table, label_set)
    report["build_stats"] = {
        k: v
        for k, v in table.attrs.get("build_stats", {}).items()
        if k not in ("lists", "dropped_no_description_ids", "build_seconds", "fingerprint")
    }
    return out, report


def main(argv: Sequence[str] | None = None) -> int:
    """Print the label-set report as JSON; docs/demo_data.md quotes this output."""
    parser = argparse.ArgumentParser(prog="python -m mlclf_utils.data.debtags", description=__doc__)
    parser.add_argument(
        "--label-set",
        default="default",
        help='"default", "all", or comma-separated tags (e.g. use::editing,use::browsing)',
    )
    parser.add_argument("--refresh", action="store_true", help="rebuild the cached table")
    parser.add_argument("--cache-dir", default=None, help="defaults to $MLCLF_CACHE_DIR etc.")
    args = parser.parse_args(argv)
    label_set: str | list[str] = args.label_set
    if label_set not in ("default", "all"):
        label_set = [t.strip() for t in args.label_set.split(",") if t.strip()]
    start = time.perf_counter()
    try:
        _, report = load_debtags(label_set, refresh=args.refresh, cache_dir=args.cache_dir)
    except (SetupError, ParameterError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    print(f"(took {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
