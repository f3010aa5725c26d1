"""The benchmarks' text: the 22-sentence corpus (corpus.txt beside this file), the job texts made of it,
and the quality benchmark's sentences with their expected readings (quality_corpus.tsv)."""
from __future__ import annotations

from importlib import resources


def corpus() -> list[str]:
    text = resources.files("voxq.bench").joinpath("corpus.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def job_texts(count: int) -> list[str]:
    """One corpus sentence per job, with a distinct prefix, so the result cache cannot flatter the figures."""
    sentences = corpus()
    return [f"第{i + 1}条。{sentences[i % len(sentences)]}" for i in range(count)]


def texts_of(count: int, chars: int) -> list[str]:
    """`count` distinct texts of `chars` characters each, the corpus's sentences run on."""
    sentences = corpus()
    texts = []
    for i in range(count):
        text, j = f"第{i + 1}段。", i
        while len(text) < chars:
            text += sentences[j % len(sentences)]
            j += 1
        texts.append(text[:chars])
    return texts


def quality_corpus() -> list[tuple[str, str | None]]:
    """`voxq bench quality`'s sentences: (text, expected reading or None when it is the text)."""
    text = resources.files("voxq.bench").joinpath("quality_corpus.tsv").read_text(encoding="utf-8")
    found = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            sent, _, reading = line.partition("\t")
            found.append((sent.strip(), reading.strip() or None))
    return found
