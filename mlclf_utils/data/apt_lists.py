"""Where the demo's Debian package lists come from: apt's own, or a copy fetched without root.

The demo reads two kinds of apt list: ``Packages`` (debtags) and ``Translation-en`` (the long
descriptions). apt skips Translation-en where ``Acquire::Languages`` is ``"none"``, and a plain
``apt-get update`` removes it again. Rather than ask for root, which a SageMaker Studio space or
a shared machine does not give, :func:`fetch_user_lists` runs apt unprivileged with its own list
and cache folders under the user's cache (``~/.cache/mlclf/apt``); apt then verifies the
archive's signatures exactly as it does for itself.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from mlclf_utils.errors import SetupError

APT_HELPER = "/usr/lib/apt/apt-helper"
# Values of apt's Created-By field for the two kinds of list the table needs.
PACKAGES_TARGET = "Packages"
TRANSLATIONS_TARGET = "Translations"
FETCH_COMMAND = "python -m mlclf_utils apt-lists"
ROOT_COMMAND = "sudo apt-get update -o Acquire::Languages=en"
SETUP_HINT = (
    f"Run `{FETCH_COMMAND}` (no root needed: it fetches Debian's package lists with the English "
    f"long descriptions into your cache, a few seconds), or as root `{ROOT_COMMAND}`. The demo "
    "table is built locally from those apt lists; it is never downloaded from a hub."
)


def user_apt_dir() -> Path:
    """``<mlclf cache>/apt``: the lists apt fetched for this user."""
    from mlclf_utils.data.debtags import default_cache_dir

    return default_cache_dir() / "apt"


def user_options(folder: str | Path | None = None) -> list[str]:
    """apt options that keep its state and cache in ``folder``, and take no system lock."""
    folder = Path(folder) if folder is not None else user_apt_dir()
    return ["-o", f"Dir::State::Lists={folder / 'lists'}", "-o", f"Dir::Cache={folder / 'cache'}",
            "-o", "Debug::NoLocking=1"]


def find_list_files(options: Sequence[str] = ()) -> dict[str, list[Path]]:
    """Ask apt which list files exist, grouped by target ("Packages", "Translations").

    One ``apt-get indextargets`` call names every list in sources order.
    ``Acquire::Languages=en`` makes it name the Translation-en lists even where the machine's
    default is ``"none"``; only files that exist are kept.
    """
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get was not found: the demo data is built from a Debian (or "
                         "derivative) machine's apt package lists. " + SETUP_HINT)
    cmd = ["apt-get", "indextargets", "-o", "Acquire::Languages=en", *options,
           "--format", "$(CREATED_BY)\t$(FILENAME)"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()}\n"
                         + SETUP_HINT)
    found: dict[str, list[Path]] = {}
    for line in proc.stdout.splitlines():
        created_by, sep, filename = line.partition("\t")
        if sep and filename.strip() and Path(filename.strip()).exists():
            found.setdefault(created_by.strip(), []).append(Path(filename.strip()))
    return found


def _missing(found: dict[str, list[Path]]) -> list[str]:
    return [what for what, target in (("Packages", PACKAGES_TARGET),
                                      ("Translation-en", TRANSLATIONS_TARGET))
            if not found.get(target)]


def discover_lists() -> tuple[list[Path], list[Path]]:
    """(Packages lists, Translation-en lists): apt's own when complete, else the user's copy;
    otherwise say what to run."""
    system = find_list_files()
    if not _missing(system):
        return system[PACKAGES_TARGET], system[TRANSLATIONS_TARGET]
    if user_apt_dir().is_dir():
        user = find_list_files(user_options())
        if not _missing(user):
            return user[PACKAGES_TARGET], user[TRANSLATIONS_TARGET]
    raise SetupError(
        f"apt has no {' and no '.join(_missing(system))} lists on this machine (with apt's "
        'default Acquire::Languages "none" it fetches no Translation-en lists, and a plain '
        "`apt-get update` may remove them again). " + SETUP_HINT)


def fetch_user_lists(folder: str | Path | None = None) -> Path:
    """``apt-get update`` into ``folder`` (default :func:`user_apt_dir`) as whoever runs it."""
    folder = Path(folder) if folder is not None else user_apt_dir()
    for sub in ("lists/partial", "cache/archives/partial"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise SetupError("apt-get was not found: the debtags demo needs a Debian or Ubuntu machine")
    cmd = ["apt-get", "update", "-qq", "-o", "Acquire::Languages=en", *user_options(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    missing = _missing(find_list_files(user_options(folder)))
    if missing:
        raise SetupError(f"apt fetched no {' and no '.join(missing)} lists into {folder}: the "
                         "machine's apt sources must include Debian's main archive")
    return folder


def ensure_lists() -> str:
    """What ``make`` calls: nothing when lists are there, else the user's copy is fetched."""
    try:
        packages, _ = discover_lists()
    except SetupError:
        folder = fetch_user_lists()
        return f"fetched Debian's package lists with English descriptions into {folder}"
    where = "this user's copy" if user_apt_dir() in packages[0].parents else "apt's own lists"
    return f"Debian's package lists are present ({where})"


def read_list_lines(path: Path) -> Iterator[str]:
    """Stream a list file's lines through apt's own decompressor (lz4, xz, gz, plain)."""
    if not Path(APT_HELPER).exists():
        raise SetupError(f"{APT_HELPER} was not found (it comes with apt). " + SETUP_HINT)
    with subprocess.Popen([APT_HELPER, "cat-file", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, encoding="utf-8",
                          errors="replace") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        yield from proc.stdout
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise SetupError(f"could not read {path}: {err.strip()}\n" + SETUP_HINT)

