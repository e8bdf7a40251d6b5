"""The fixed multilingual quality corpus (corpus.txt beside this file: one text per line, never changes).

358 texts: 14 sentences each in German, French, Spanish, Italian, Portuguese, Russian, Japanese, Korean
and Arabic (translations of one another, so they form clusters); 42 varied English sentences in pairs
of paraphrases plus a little code and SQL; 10 paragraphs of 60-220 tokens in five languages; 100
English and 80 Chinese short texts from vectors.loadtest.corpus (seed 7). Change it and every recorded
quality figure changes with it: add a new file instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PATH = Path(__file__).with_name("corpus.txt")


@cache
def quality_corpus() -> tuple[str, ...]:
    """Return the corpus texts, in file order."""
    return tuple(line for line in PATH.read_text(encoding="utf-8").splitlines() if line.strip())
