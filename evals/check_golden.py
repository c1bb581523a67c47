"""`python -m evals.check_golden FILE`: check new golden questions before they join the set.

Writers of a new round (people or helpers who must not see the code or its answers) run it on their own
file; it reports what would make an item measure the wrong thing and shows no system answer:

- an anchor (``relevant[].contains``) that is not verbatim in its document, or lies only in text that is
  never quoted (an FAQ entry's sources line);
- a ``must_contain`` group that no relevant passage states, so a correct answer could not hold it;
- a forbidden string (a corrected claim's words) that official text or a relevant passage also uses, so
  quoting the correction would count as repeating the claim;
- an answerable item without relevant passages or facts, an unanswerable one with them, a duplicate id or
  a question already in the golden set.

Exits 1 when anything is reported. Reads the index at ``KB_INDEX_DIR`` (``make index``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from evals.golden import Item, Snapshot, golden_files, load_golden, passage_chunks
from kb.types import OFFICIAL_KINDS


def problems(item: Item, snapshot: Snapshot) -> list[str]:
    """What is wrong with one item, against the indexed material."""
    out = []
    texts: list[str] = []  # the quotable passages the item's anchors fall in
    chunks = snapshot.chunks
    for doc_id, contains in item.relevant:
        found = passage_chunks(snapshot.documents, chunks, doc_id, contains)
        if found is None:
            out.append(f"anchor not verbatim in {doc_id}: {contains!r}")
        elif not found:
            out.append(f"anchor in no quotable passage (a sources line?): {contains!r}")
        else:
            texts.extend(c.text for c in found)
    if item.answerable and not (item.relevant and item.must_contain):
        out.append("an answerable item needs relevant passages and must_contain")
    if not item.answerable and (item.relevant or item.must_contain):
        out.append("an unanswerable item has no relevant passages or must_contain")
    for group in item.must_contain:
        if texts and not any(alt.casefold() in t.casefold() for alt in group for t in texts):
            out.append(f"must_contain group {list(group)} is in no relevant passage")
    official = [d.text for d in snapshot.documents.values() if d.kind in OFFICIAL_KINDS]
    for words in item.forbidden:
        if any(words.casefold() in t.casefold() for t in official + texts):
            out.append(f"forbidden {words!r} is also in official text or a relevant passage")
    return out


def check(items: Sequence[Item], snapshot: Snapshot, known: Sequence[Item] = ()) -> list[str]:
    """Every problem of ``items``, each prefixed with its item's id; ``known``: the set they would join."""
    out, seen = [], {i.id for i in known}
    asked = {i.question.strip().casefold() for i in known}
    for item in items:
        if item.id in seen:
            out.append(f"{item.id}: duplicate id")
        seen.add(item.id)
        if item.question.strip().casefold() in asked:
            out.append(f"{item.id}: question already in the golden set")
        out.extend(f"{item.id}: {p}" for p in problems(item, snapshot))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from kb.config import Settings
    from kb.knowledge import KnowledgeBase

    parser = argparse.ArgumentParser(
        prog="python -m evals.check_golden", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "file", type=Path, help="new items, one JSON object per line, as in evals/golden/*.jsonl"
    )
    args = parser.parse_args(argv)
    try:
        items = load_golden(args.file)
    except (OSError, ValueError, KeyError) as exc:
        sys.exit(f"check_golden: cannot read {args.file}: {exc}")
    snapshot = Snapshot.of(KnowledgeBase.open(Settings.from_env()).store)
    # the set the items would join: every golden file but the one checked (or none, checking the whole set)
    checked = {f.resolve() for f in golden_files(args.file)}
    known = [f for f in golden_files() if f.resolve() not in checked]
    found = check(items, snapshot, [i for f in known for i in load_golden(f)])
    print(f"{len(items)} items, {len(found)} problems")
    for line in found:
        print(f"  {line}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
