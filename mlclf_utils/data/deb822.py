"""Debian's deb822 package lists, parsed: stanzas, tags, translations, and the tagged table.

Apt's ``Packages`` lists carry each package's ``Tag:`` field and ``Translation-en`` lists its
long English description; joining the two gives the demo's (source_id, text, labels) table.
Parsing is kept apart from the cache and the label sets (``debtags``) because it is pure:
it takes text or lines and needs neither apt nor the disk.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator

import pandas as pd


def _as_lines(source: str | Iterable[str]) -> Iterable[str]:
    """Let the parsers take a whole text (tests) or a stream of lines (real lists)."""
    return source.splitlines() if isinstance(source, str) else source


def iter_stanzas(
    source: str | Iterable[str], fields: Container[str] | None = None
) -> Iterator[dict[str, str]]:
    """Yield deb822 stanzas as ``{field: value}``; continuation lines are kept verbatim.

    A multi-line value is its first line (stripped) plus each continuation line as it stands,
    joined by ``"\\n"``, so a ``Description-en`` keeps Debian's leading spaces and ``" ."``
    markers. ``fields`` limits what is stored, which keeps parsing the 50 MB lists fast.
    """
    stanza: dict[str, str] = {}
    current: str | None = None
    for raw in _as_lines(source):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if stanza:
                yield stanza
            stanza, current = {}, None
        elif line[0] in " \t":
            if current is not None:
                stanza[current] += "\n" + line
        else:
            name, sep, value = line.partition(":")
            if not sep:  # not a field line; deb822 has none, so skip rather than guess
                current = None
                continue
            if fields is None or name in fields:
                current = name
                stanza[name] = value.strip()
            else:
                current = None
    if stanza:
        yield stanza


def parse_tags(value: str) -> list[str]:
    """Split a ``Tag:`` value (comma-separated, possibly over several lines) into sorted tags."""
    return sorted({t.strip() for t in value.replace("\n", " ").split(",") if t.strip()})


def parse_translations(source: str | Iterable[str]) -> dict[str, str]:
    """Map ``Description-md5`` to ``Description-en`` for one Translation-en list."""
    out: dict[str, str] = {}
    for st in iter_stanzas(source, fields=("Description-md5", "Description-en")):
        md5, text = st.get("Description-md5"), st.get("Description-en")
        if md5 and text is not None:
            out.setdefault(md5, text)
    return out


def assemble_table(
    packages_lists: Iterable[str | Iterable[str]],
    translation_lists: Iterable[str | Iterable[str]],
) -> pd.DataFrame:
    """Join Packages records with their English descriptions into the full tagged table.

    Deduplication: a package can sit in several lists (bookworm, -updates, -security). The
    record kept is the first one that carries a ``Tag:`` field, in the order the lists are
    given (apt's ``indextargets`` order, i.e. sources order). Tag-less duplicates are skipped
    rather than preferred because the security archive ships no tags at all; whatever the
    sources order, a package keeps its tags.

    A tagged package whose ``Description-md5`` has no translation falls back to the Packages
    ``Description:`` field (counted); with neither it is dropped (counted). Nothing vanishes
    without a number in ``df.attrs["build_stats"]``.
    """
    translations: dict[str, str] = {}
    for source in translation_lists:
        for md5, text in parse_translations(source).items():
            translations.setdefault(md5, text)

    wanted = ("Package", "Tag", "Description-md5", "Description")
    records_read = 0
    seen: set[str] = set()
    chosen: dict[str, dict[str, str]] = {}
    n_lists = 0
    for source in packages_lists:
        n_lists += 1
        for st in iter_stanzas(source, fields=wanted):
            name = st.get("Package")
            if not name:
                continue
            records_read += 1
            seen.add(name)
            if name not in chosen and parse_tags(st.get("Tag", "")):
                chosen[name] = st

    rows = []
    n_fallback = n_no_text = 0
    no_text_ids: list[str] = []
    for name in sorted(chosen):
        st = chosen[name]
        text = translations.get(st.get("Description-md5", ""))
        if text is None:
            text = st.get("Description")
            if text:
                n_fallback += 1
            else:
                n_no_text += 1
                no_text_ids.append(name)
                continue
        rows.append((name, text, parse_tags(st["Tag"])))

    df = pd.DataFrame(rows, columns=["source_id", "text", "labels"])
    df["source_id"] = df["source_id"].astype(str)
    df["text"] = df["text"].astype(str)
    df.attrs["build_stats"] = {
        "packages_lists": n_lists,
        "records_read": records_read,
        "packages_seen": len(seen),
        "duplicates_dropped": records_read - len(seen),
        "packages_tagged": len(chosen),
        "tagged_without_translation": n_fallback + n_no_text,
        "used_short_description_only": n_fallback,
        "dropped_no_description": n_no_text,
        "dropped_no_description_ids": no_text_ids[:20],
        "rows": len(df),
    }
    return df
