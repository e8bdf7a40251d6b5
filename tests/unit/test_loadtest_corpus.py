"""The texts a benchmark sends: the built-in corpus and corpus files."""

from __future__ import annotations

import re
from itertools import islice

import pytest

from vectors.loadtest.corpus import CorpusError, batches, default_corpus, read_corpus

HAN = re.compile(r"[\u4e00-\u9fff]")


def test_default_corpus_holds_thousands_of_unique_short_texts():
    texts = default_corpus()
    assert len(texts) >= 10_000
    assert len(set(texts)) == len(texts)
    assert max(len(t) for t in texts) < 200


def test_default_corpus_mixes_english_and_chinese():
    texts = default_corpus()
    chinese = [t for t in texts if HAN.search(t)]
    assert 0.2 < len(chinese) / len(texts) < 0.5
    assert any(t.endswith("?") for t in texts) and any(t.endswith("？") for t in texts)


def test_default_corpus_is_the_same_on_every_call_and_changes_with_the_seed():
    assert default_corpus(50, 20) == default_corpus(50, 20)
    assert default_corpus(50, 20, seed=1) != default_corpus(50, 20, seed=2)


def test_read_corpus_keeps_one_text_per_non_blank_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first text\n\n  second text  \n今天天气很好\n", encoding="utf-8")
    assert read_corpus(path) == ["first text", "second text", "今天天气很好"]


def test_read_corpus_refuses_a_file_without_text(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="holds no text"):
        read_corpus(path)


def test_read_corpus_refuses_a_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="cannot read"):
        read_corpus(path)


def test_batches_walk_the_corpus_round_and_round():
    assert list(islice(batches(["a", "b", "c"], 2), 3)) == [["a", "b"], ["c", "a"], ["b", "c"]]


def test_the_shipped_corpus_file_is_the_built_in_corpus():
    from tests.conftest import ROOT

    assert read_corpus(ROOT / "bench" / "corpora" / "default.txt") == default_corpus()
