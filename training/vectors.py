"""Pretrained word vectors: the English GloVe 6B package by default, or any file in the
word2vec / GloVe text format (``word v1 v2 ... vD`` per line, optionally gzip-compressed,
optionally after a word2vec ``N D`` header line), so any language with published vectors
(fastText's ``cc.*.vec``, word2vec exports) trains the same way.

Words are keyed lower-cased, as the model looks them up (:func:`~tagserve.model.vocab.word_keys`);
where a cased file holds several spellings of one word, the first (the most frequent, in
file order) wins. Every problem names the file and the line.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import numpy as np

from tagserve.model.vocab import word_keys
from tagserve.training.glove import load_glove

GLOVE_DIM = 50
_GZIP_MAGIC = b"\x1f\x8b"


class VectorsError(ValueError):
    """A vectors file that cannot be read: names the file, the line and the problem."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"vectors {where}: {problem}")


def load_vectors(path: Path | None, max_rows: int | None = None) -> tuple[list[str], np.ndarray]:
    """The first ``max_rows`` distinct words of ``path`` (GloVe 6B when None) and their
    vectors as a (rows, dim) float32 matrix."""
    if path is None:
        return load_glove(max_rows)
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    for _, word, vector in _rows(Path(path)):
        if max_rows is not None and len(words) >= max_rows:
            break
        key = word_keys(word)[0]
        if key in seen:
            continue
        seen.add(key)
        words.append(key)
        rows.append(vector)
    if not rows:
        return [], np.zeros((0, vectors_dim(path)), dtype=np.float32)
    return words, np.stack(rows)


def vectors_dim(path: Path | None) -> int:
    """Width of the vectors in ``path`` (GloVe 6B's 50 when None), from its first row."""
    if path is None:
        return GLOVE_DIM
    for _, _, vector in _rows(Path(path)):
        return int(vector.shape[0])
    raise AssertionError("unreachable: _rows raises on a file without vectors")


def _rows(path: Path) -> Iterator[tuple[int, str, np.ndarray]]:
    """(line number, word, vector) for every row; checks widths against the header or the
    first row."""
    dim: int | None = None
    count = 0
    with _open(path) as stream:
        for number, raw in _lines(path, stream):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise VectorsError(
                    path, number, f"not UTF-8 text ({error.reason} at byte {error.start})"
                ) from None
            if not line.strip():
                continue
            fields = line.rstrip().split(" ")
            if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                dim = int(fields[1])
                if dim < 1:
                    raise VectorsError(path, number, f"header says {dim} dimensions")
                continue
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise VectorsError(path, number, "expected a word and its numbers")
            if len(fields) < dim + 1:
                raise VectorsError(
                    path, number, f"expected {dim} numbers after the word, got {len(fields) - 1}"
                )
            # Some published files have words with spaces in them: the numbers are the last dim
            # fields, the word is the rest.
            word = " ".join(fields[:-dim])
            try:
                vector = np.array(fields[-dim:], dtype=np.float32)
            except ValueError:
                bad = next(f for f in fields[-dim:] if not _is_number(f))
                raise VectorsError(path, number, f"{bad!r} is not a number") from None
            if not np.isfinite(vector).all():
                raise VectorsError(path, number, "holds a value that is not finite")
            count += 1
            yield number, word, vector
    if count == 0:
        raise VectorsError(path, None, "no vectors found (empty file?)")


def _lines(path: Path, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Numbered lines; a damaged gzip stream is an error naming the line it broke at."""
    number = 0
    try:
        for number, raw in enumerate(stream, start=1):
            yield number, raw
    except (OSError, EOFError) as error:
        raise VectorsError(path, number + 1, f"cannot read the file ({error})") from None


def _open(path: Path) -> IO[bytes]:
    try:
        stream: IO[bytes] = path.open("rb")
    except FileNotFoundError:
        raise VectorsError(path, None, "file not found") from None
    except IsADirectoryError:
        raise VectorsError(path, None, "is a directory, expected a vectors file") from None
    if stream.read(2) == _GZIP_MAGIC:
        stream.close()
        return cast(IO[bytes], gzip.open(path, "rb"))
    stream.seek(0)
    return stream


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
