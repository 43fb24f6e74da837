"""Tests for mlclf_utils.data.debtags and its parser deb822: inline stanzas, then one build on the
real lists."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from mlclf_utils.data import apt_lists, deb822, debtags
from mlclf_utils.errors import ParameterError, SetupError

# Three lists in apt's order: the main archive, -updates, -security (which has no tags).
MAIN_PACKAGES = """\
Package: alpha
Version: 1.0-1
Description: Alpha editor for text
Description-md5: 11111111111111111111111111111111
Tag: interface::commandline, role::program,
 use::editing, works-with::text,
 special::not-yet-tagged
Section: editors

Package: beta
Version: 2.0-1
Description: Beta audio player
Description-md5: 22222222222222222222222222222222
Tag: use::playing, works-with::audio, x11::TODO

Package: gamma
Version: 3.0-1
Description: Gamma shared library
Description-md5: 33333333333333333333333333333333
Tag: devel::library, role::shared-lib

Package: delta
Version: 4.0-1
Description: Delta without a translation
Description-md5: 44444444444444444444444444444444
Tag: use::editing

Package: epsilon
Version: 5.0-1
Description-md5: 55555555555555555555555555555555
Tag: use::viewing

Package: untagged
Version: 1
Description: Nobody tagged me
Description-md5: 66666666666666666666666666666666
"""

UPDATES_PACKAGES = """\
Package: beta
Version: 2.0-1+deb12u1
Description: Beta audio player
Description-md5: 22222222222222222222222222222222
Tag: use::gameplaying
"""

SECURITY_PACKAGES = """\
Package: alpha
Version: 1.0-1+deb12u1
Description: Alpha editor for text
Description-md5: 11111111111111111111111111111111
"""

MAIN_TRANSLATIONS = """\
Package: alpha
Description-md5: 11111111111111111111111111111111
Description-en: Alpha editor for text
 Alpha edits plain text files.
 .
 It has  two spaces and a second paragraph.

Package: beta
Description-md5: 22222222222222222222222222222222
Description-en: Beta audio player
 Beta plays music.

Package: gamma
Description-md5: 33333333333333333333333333333333
Description-en: Gamma shared library
 This package contains the shared library.
"""


def _table() -> pd.DataFrame:
    return deb822.assemble_table(
        [SECURITY_PACKAGES, MAIN_PACKAGES, UPDATES_PACKAGES], [MAIN_TRANSLATIONS]
    )


# --------------------------------------------------------------------------- parsing


def test_stanzas_join_tag_continuation_lines():
    stanzas = list(deb822.iter_stanzas(MAIN_PACKAGES))
    assert [s["Package"] for s in stanzas] == [
        "alpha", "beta", "gamma", "delta", "epsilon", "untagged"
    ]
    assert deb822.parse_tags(stanzas[0]["Tag"]) == [
        "interface::commandline",
        "role::program",
        "special::not-yet-tagged",
        "use::editing",
        "works-with::text",
    ]
    # The field after a continued Tag: is read as a field, not as more tags.
    assert stanzas[0]["Section"] == "editors"


def test_stanzas_keep_only_requested_fields_and_accept_line_iterables():
    lines = iter(MAIN_PACKAGES.splitlines(keepends=True))
    stanzas = list(deb822.iter_stanzas(lines, fields=("Package", "Tag")))
    assert set(stanzas[0]) == {"Package", "Tag"}
    assert "untagged" in [s["Package"] for s in stanzas]


def test_translation_text_keeps_debian_markers_verbatim():
    text = deb822.parse_translations(MAIN_TRANSLATIONS)["11111111111111111111111111111111"]
    assert text == (
        "Alpha editor for text\n"
        " Alpha edits plain text files.\n"
        " .\n"
        " It has  two spaces and a second paragraph."
    )


def test_duplicates_keep_first_tagged_record_in_list_order():
    df = _table()
    stats = df.attrs["build_stats"]
    labels = dict(zip(df["source_id"], df["labels"]))
    # alpha: the tag-less security copy comes first but the tagged main record wins.
    assert "use::editing" in labels["alpha"]
    # beta: main comes before -updates, so main's tags win.
    assert labels["beta"] == ["use::playing", "works-with::audio", "x11::TODO"]
    assert stats["records_read"] == 8
    assert stats["packages_seen"] == 6
    assert stats["duplicates_dropped"] == 2
    assert stats["packages_lists"] == 3


def test_missing_translation_is_counted_not_lost():
    df = _table()
    stats = df.attrs["build_stats"]
    texts = dict(zip(df["source_id"], df["text"]))
    assert texts["delta"] == "Delta without a translation"  # Packages Description: fallback
    assert "epsilon" not in texts  # neither translation nor Description
    assert stats["packages_tagged"] == 5
    assert stats["tagged_without_translation"] == 2
    assert stats["used_short_description_only"] == 1
    assert stats["dropped_no_description"] == 1
    assert stats["dropped_no_description_ids"] == ["epsilon"]
    assert stats["rows"] == len(df) == 4


def test_table_contract_columns_and_types():
    df = _table()
    assert list(df.columns) == ["source_id", "text", "labels"]
    assert df["source_id"].tolist() == sorted(df["source_id"])
    assert all(isinstance(v, str) for v in df["text"])
    assert all(isinstance(v, list) and v == sorted(v) for v in df["labels"])
    assert "untagged" not in set(df["source_id"])


# --------------------------------------------------------------------------- label sets


def test_explicit_label_set_filters_and_counts_drops():
    out, report = debtags.restrict_labels(_table(), ["use::editing", "works-with::audio"])
    assert dict(zip(out["source_id"], out["labels"])) == {
        "alpha": ["use::editing"],
        "beta": ["works-with::audio"],
        "delta": ["use::editing"],
    }
    assert report["n_packages_tagged"] == 4
    assert report["n_rows_kept"] == 3
    assert report["n_rows_dropped_no_label"] == 1  # gamma has only devel/role tags
    assert report["n_labels"] == 2
    assert report["label_counts"] == {"use::editing": 2, "works-with::audio": 1}
    assert report["imbalance_ratio"] == 2.0
    assert report["median_labels_per_row"] == 1.0


def test_unknown_tag_is_a_parameter_error_naming_it():
    with pytest.raises(ParameterError, match=r"no::such-tag") as info:
        debtags.restrict_labels(_table(), ["use::editing", "no::such-tag"])
    assert info.value.name == "label_set"
    assert "use::editing'" not in str(info.value).split("unknown")[1]


@pytest.mark.parametrize("bad", ["everything", [], [3]])
def test_bad_label_set_values_are_refused(bad):
    with pytest.raises(ParameterError, match="label_set"):
        debtags.restrict_labels(_table(), bad)


def test_all_excludes_special_and_todo_tags():
    out, report = debtags.restrict_labels(_table(), "all")
    used = set(report["label_counts"])
    assert "special::not-yet-tagged" not in used
    assert "x11::TODO" not in used
    assert {"use::editing", "role::program", "devel::library"} <= used
    kept = {t for labels in out["labels"] for t in labels}
    assert not any(t.startswith("special::") or t.endswith("::TODO") for t in kept)


@pytest.mark.parametrize(
    ("tag", "excluded"),
    [("special::foo", True), ("use::TODO", True), ("x::TODO", True), ("use::editing", False)],
)
def test_is_excluded_tag(tag, excluded):
    assert debtags.is_excluded_tag(tag) is excluded


def test_default_labels_are_sorted_unique_and_describe_content():
    labels = debtags.DEFAULT_LABELS
    assert list(labels) == sorted(set(labels))
    assert 20 <= len(labels) <= 60
    assert not any(debtags.is_excluded_tag(t) for t in labels)
    packaging = ("role::", "devel::", "implemented-in::", "suite::", "made-of::")
    assert not any(t.startswith(packaging) for t in labels)


# --------------------------------------------------------------------------- setup errors


def test_missing_lists_raise_setup_error_with_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(apt_lists, "find_list_files", lambda options=(): {})
    with pytest.raises(SetupError) as info:
        debtags.build_debtags_table(cache_dir=tmp_path, fetch_lists=False)
    message = str(info.value)
    assert "python -m mlclf_utils apt-lists` (no root needed" in message
    assert "sudo apt-get update -o Acquire::Languages=en" in message
    assert "never downloaded from a hub" in message


def test_missing_lists_are_fetched_for_the_user_first(monkeypatch, tmp_path):
    fetched = []
    monkeypatch.setattr(apt_lists, "find_list_files", lambda options=(): {})
    monkeypatch.setattr(apt_lists, "fetch_user_lists", lambda folder=None: fetched.append(1))
    with pytest.raises(SetupError, match="no Packages and no Translation-en"):
        debtags.build_debtags_table(cache_dir=tmp_path)
    assert fetched == [1]


def test_missing_translations_only_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(apt_lists, "find_list_files",
                        lambda options=(): {apt_lists.PACKAGES_TARGET: [tmp_path / "Packages"]})
    monkeypatch.setattr(apt_lists, "fetch_user_lists", lambda folder=None: None)
    with pytest.raises(SetupError, match="no Translation-en lists") as info:
        debtags.load_debtags(cache_dir=tmp_path)
    assert "sudo apt-get update -o Acquire::Languages=en" in str(info.value)


def test_no_apt_get_raises_setup_error(monkeypatch):
    monkeypatch.setattr(apt_lists.shutil, "which", lambda name: None)
    with pytest.raises(SetupError, match="apt-get was not found") as info:
        apt_lists.find_list_files()
    assert "python -m mlclf_utils apt-lists" in str(info.value)


def test_the_user_copy_stands_in_when_apt_lacks_the_lists(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCLF_CACHE_DIR", str(tmp_path))
    (tmp_path / "apt").mkdir()
    user = {apt_lists.PACKAGES_TARGET: [tmp_path / "apt" / "P"],
            apt_lists.TRANSLATIONS_TARGET: [tmp_path / "apt" / "T"]}
    seen = []

    def fake(options=()):
        seen.append(list(options))
        return user if options else {apt_lists.PACKAGES_TARGET: [Path("/var/lib/apt/lists/P")]}

    monkeypatch.setattr(apt_lists, "find_list_files", fake)
    assert apt_lists.discover_lists() == (user[apt_lists.PACKAGES_TARGET],
                                          user[apt_lists.TRANSLATIONS_TARGET])
    assert seen[1] == apt_lists.user_options(tmp_path / "apt")
    assert f"Dir::State::Lists={tmp_path / 'apt' / 'lists'}" in seen[1]


@pytest.mark.slow
def test_a_user_without_root_fetches_the_lists_into_their_cache(request):
    """As a real unprivileged user: apt runs with its own state and cache folders."""
    import os
    import pwd
    import subprocess

    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root to create the unprivileged user")
    name = "mlclf-nonroot"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", name], check=True)
    import tempfile

    cache = Path(tempfile.mkdtemp(prefix="mlclf-nonroot-"))  # pytest's tmp_path is root-only
    request.addfinalizer(lambda: shutil.rmtree(cache, ignore_errors=True))
    cache.chmod(0o755)
    shutil.chown(cache, user=name)
    # Debian's own Python: this venv's interpreter may live in root's home, which the user
    # cannot enter. apt_lists needs nothing outside the standard library.
    python, checkout = "/usr/bin/python3", Path(apt_lists.__file__).resolve().parents[2]
    readable = subprocess.run(["runuser", "-u", name, "--", "test", "-r",
                               str(checkout / "mlclf_utils" / "data" / "apt_lists.py")])
    if not Path(python).exists() or readable.returncode != 0:
        pytest.skip(f"{name} cannot run {python} on {checkout}")
    program = ("import sys; sys.modules['pandas'] = None  # proves no heavy import is needed\n"
               "from pathlib import Path\n"
               "from mlclf_utils.data import apt_lists\n"
               f"folder = apt_lists.fetch_user_lists(Path({str(cache / 'apt')!r}))\n"
               "found = apt_lists.find_list_files(apt_lists.user_options(folder))\n"
               "print(folder, len(found['Packages']), len(found['Translations']))")
    env = {"PATH": os.environ["PATH"], "HOME": pwd.getpwnam(name).pw_dir,
           "PYTHONPATH": str(checkout)}
    result = subprocess.run(["runuser", "-u", name, "--", python, "-c", program],
                            capture_output=True, text=True, env=env, cwd=str(cache))
    assert result.returncode == 0, result.stderr
    folder, packages, translations = result.stdout.split()
    assert folder == str(cache / "apt") and int(packages) >= 1 and int(translations) >= 1
    assert all(p.owner() == name for p in (cache / "apt" / "lists").glob("*Translation-en*"))


# --------------------------------------------------------------------------- cache


@pytest.fixture
def synthetic_lists(monkeypatch, tmp_path):
    """Plain-text lists on disk, served without apt, so the cache logic runs anywhere."""
    files = {}
    for name, text in [
        ("main_Packages", MAIN_PACKAGES),
        ("updates_Packages", UPDATES_PACKAGES),
        ("main_Translation-en", MAIN_TRANSLATIONS),
    ]:
        files[name] = tmp_path / "lists" / name
        files[name].parent.mkdir(exist_ok=True)
        files[name].write_text(text)
    monkeypatch.setattr(
        apt_lists,
        "find_list_files",
        lambda options=(): {
            apt_lists.PACKAGES_TARGET: [files["main_Packages"], files["updates_Packages"]],
            apt_lists.TRANSLATIONS_TARGET: [files["main_Translation-en"]],
        },
    )
    monkeypatch.setattr(apt_lists, "read_list_lines", lambda p: Path(p).open(encoding="utf-8"))
    return files


def test_cache_is_written_once_and_reused(synthetic_lists, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = debtags.build_debtags_table(cache_dir=cache)
    (path,) = cache.glob("debtags-*.parquet")
    stamp = path.stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("the cached table should have been reused")

    monkeypatch.setattr(deb822, "assemble_table", must_not_build)
    second = debtags.build_debtags_table(cache_dir=cache)
    assert path.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first, second)
    assert all(isinstance(v, list) for v in second["labels"])  # not numpy arrays
    assert second.attrs["build_stats"]["packages_tagged"] == 5
    assert not list(cache.glob("*.tmp"))


def test_new_apt_lists_invalidate_the_cache(synthetic_lists, tmp_path):
    cache = tmp_path / "cache"
    debtags.build_debtags_table(cache_dir=cache)
    (old,) = cache.glob("debtags-*.parquet")
    main = synthetic_lists["main_Packages"]
    main.write_text(MAIN_PACKAGES.replace("Package: gamma", "Package: gamma2"))
    st = main.stat()
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    df = debtags.build_debtags_table(cache_dir=cache)
    (new,) = cache.glob("debtags-*.parquet")
    assert new != old and not old.exists()
    assert "gamma2" in set(df["source_id"])


def test_refresh_rebuilds(synthetic_lists, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    debtags.build_debtags_table(cache_dir=cache)
    calls = []
    real = deb822.assemble_table
    monkeypatch.setattr(deb822, "assemble_table", lambda *a: calls.append(1) or real(*a))
    debtags.build_debtags_table(cache_dir=cache, refresh=True)
    assert calls == [1]


def test_failed_write_leaves_no_file_behind(synthetic_lists, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def broken_to_parquet(self, path, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken_to_parquet)
    with pytest.raises(OSError, match="disk full"):
        debtags.build_debtags_table(cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCLF_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert debtags.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MLCLF_CACHE_DIR")
    assert debtags.default_cache_dir() == tmp_path / "xdg" / "mlclf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert debtags.default_cache_dir() == tmp_path / "home" / ".cache" / "mlclf"


def test_main_prints_the_report_as_json(synthetic_lists, tmp_path, capsys):
    rc = debtags.main(["--label-set", "use::editing,use::playing", "--cache-dir", str(tmp_path)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label_counts"] == {"use::editing": 2, "use::playing": 1}
    assert report["build_stats"]["duplicates_dropped"] == 1


# --------------------------------------------------------------------------- real lists


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get is not installed here")
def test_real_apt_lists(tmp_path, monkeypatch):
    """Builds from this machine's lists; a missing Translation-en list fails with SetupError."""
    cache = tmp_path / "cache"
    start = time.perf_counter()
    table = debtags.build_debtags_table(cache_dir=cache)
    build_seconds = time.perf_counter() - start
    (path,) = cache.glob("debtags-*.parquet")
    stamp = path.stat().st_mtime_ns
    assert not list(cache.glob("*.tmp"))

    stats = table.attrs["build_stats"]
    assert stats["packages_tagged"] >= 20_000
    assert len(table) >= 20_000
    # Nearly every tagged package has an English long description.
    assert stats["tagged_without_translation"] <= 0.01 * stats["packages_tagged"]
    assert any("\n" in t for t in table["text"].head(100))

    monkeypatch.setattr(deb822, "assemble_table", lambda *a: pytest.fail("cache not reused"))
    start = time.perf_counter()
    out, report = debtags.load_debtags(cache_dir=cache)
    assert time.perf_counter() - start < build_seconds
    assert path.stat().st_mtime_ns == stamp

    assert set(report["label_counts"]) == set(debtags.DEFAULT_LABELS)
    assert report["labels_without_rows"] == []
    assert 20 <= report["n_labels"] <= 60
    assert report["imbalance_ratio"] >= 20
    assert report["label_count_min"] >= 40
    assert report["n_rows_kept"] >= 5_000
    assert report["n_rows_kept"] + report["n_rows_dropped_no_label"] == len(table)
    assert all(labels and set(labels) <= set(debtags.DEFAULT_LABELS) for labels in out["labels"])


def test_ensure_lists_fetches_the_user_copy_only_when_apt_lacks_the_lists(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCLF_CACHE_DIR", str(tmp_path))
    fetched = []
    present = {"lists": None}

    def discover():
        if present["lists"] is None:
            raise SetupError("no lists")
        return present["lists"], present["lists"]

    monkeypatch.setattr(apt_lists, "discover_lists", discover)
    monkeypatch.setattr(apt_lists, "fetch_user_lists", lambda folder=None: fetched.append(1) or tmp_path)
    assert "fetched" in apt_lists.ensure_lists() and fetched == [1]
    present["lists"] = [Path("/var/lib/apt/lists/x_Packages")]
    assert "apt's own lists" in apt_lists.ensure_lists() and fetched == [1]
    present["lists"] = [tmp_path / "apt" / "lists" / "x_Packages"]
    assert "this user's copy" in apt_lists.ensure_lists()
