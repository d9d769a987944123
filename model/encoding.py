"""Turn token lists into the padded index tensors the network reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tagserve.model.vocab import Vocabulary, casing_class


@dataclass
class EncodedBatch:
    """Padded inputs for a batch of sentences (padding on the right, index 0)."""

    # (batch, seq_len)
    words: torch.Tensor
    # (batch, seq_len)
    casing: torch.Tensor
    # (batch, seq_len, max_chars)
    chars: torch.Tensor
    # (batch,)
    lengths: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(batch, seq_len) true at real tokens."""
        return padding_mask(self.lengths, self.words.size(1))

    def to(self, device: torch.device | str) -> EncodedBatch:
        """Copy to ``device``."""
        return EncodedBatch(
            self.words.to(device),
            self.casing.to(device),
            self.chars.to(device),
            self.lengths.to(device),
        )


def padding_mask(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(batch, seq_len) true at real tokens of right-padded sequences, on ``lengths``' device."""
    positions = torch.arange(seq_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def encode(
    sentences: list[list[str]], words: Vocabulary, chars: Vocabulary, max_word_chars: int
) -> EncodedBatch:
    """Encode non-empty sentences; over-long words keep ``max_word_chars``."""
    if any(not sentence for sentence in sentences):
        raise ValueError("cannot encode an empty sentence; filter empty inputs before the model")
    seq_len = max((len(s) for s in sentences), default=0)
    word_chars = max(min(max((len(w) for s in sentences for w in s), default=1), max_word_chars), 1)
    word_ids: list[list[int]] = []
    casing_ids: list[list[int]] = []
    char_ids: list[list[list[int]]] = []
    pad_word = [0] * word_chars
    for sentence in sentences:
        padding = seq_len - len(sentence)
        word_ids.append([words.word_index(w) for w in sentence] + [0] * padding)
        casing_ids.append([casing_class(w) for w in sentence] + [0] * padding)
        rows = []
        for word in sentence:
            ids = [chars.index(c) for c in word[:word_chars]]
            rows.append(ids + [0] * (word_chars - len(ids)))
        char_ids.append(rows + [pad_word] * padding)
    return EncodedBatch(
        torch.tensor(word_ids, dtype=torch.long),
        torch.tensor(casing_ids, dtype=torch.long),
        torch.tensor(char_ids, dtype=torch.long),
        torch.tensor([len(s) for s in sentences], dtype=torch.long),
    )
