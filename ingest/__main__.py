"""`python -m ingest CORPUS`: parse a corpus folder and print documents and chunks per kind."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from ingest.loader import load_corpus


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "corpus")
    corpus = load_corpus(root)
    docs: Counter[str] = Counter()
    chunks: Counter[str] = Counter()
    for parsed in corpus.parsed:
        docs[parsed.document.kind] += 1
        chunks[parsed.document.kind] += len(parsed.chunks)
    print(f"{'kind':<10}{'documents':>10}{'chunks':>8}")
    for kind in sorted(docs):
        print(f"{kind:<10}{docs[kind]:>10}{chunks[kind]:>8}")
    print(f"{'total':<10}{sum(docs.values()):>10}{sum(chunks.values()):>8}")
    if corpus.problems:
        print(f"\nskipped {len(corpus.problems)} file(s):")
        for problem in corpus.problems:
            print(f"  {problem}")
    return 0 if corpus.parsed or not corpus.problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
