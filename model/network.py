"""The BiLSTM(-CNN)-CRF tagger: word + casing + character features → recurrent encoder → decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from tagserve.model.config import TaggerConfig
from tagserve.model.crf import CRF
from tagserve.model.encoding import EncodedBatch, padding_mask


@dataclass(frozen=True)
class Encoded:
    """The encoder's states: padded (batch, seq_len, dim), or packed when the batch has
    padding (so the output layer runs on real tokens only)."""

    states: torch.Tensor | PackedSequence
    lengths: torch.Tensor
    total_length: int

    def padded(self) -> torch.Tensor:
        """(batch, seq_len, dim), zeros at padding."""
        if not isinstance(self.states, PackedSequence):
            return self.states
        states, _ = pad_packed_sequence(
            self.states, batch_first=True, total_length=self.total_length
        )
        return states


class CharCNN(nn.Module):
    """Per-word character CNN with max-pooling over real characters only (Ma & Hovy, 2016)."""

    def __init__(self, num_chars: int, char_dim: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, channels, kernel, padding=kernel // 2)
        self.output_dim = channels

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """(words, max_chars) → (words, channels)."""
        kernel = self.conv.kernel_size[0]
        half = kernel // 2
        # (words, max_chars + 2 * half, char_dim)
        embedded = nn.functional.pad(self.embedding(chars), (0, 0, half, half))
        max_chars = chars.size(1)
        # (words, max_chars, kernel * char_dim): each position's window, as Conv1d sees it
        windows = torch.cat([embedded[:, k : k + max_chars] for k in range(kernel)], dim=2)
        # Conv1d as one matrix product: far cheaper than a convolution call for short words.
        # (channels, kernel * char_dim), matching the window layout above
        weight = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)
        # (words, max_chars, channels)
        convolved = nn.functional.linear(windows, weight, self.conv.bias)
        # Padding characters must not win the max, or a word's features would depend on the
        # longest word in its batch.
        pad = (chars == 0).unsqueeze(2)
        pooled = convolved.masked_fill(pad, -1e4).max(dim=1).values
        # (words, channels)
        return pooled.masked_fill(pad.all(dim=1), 0.0)


class CharLSTM(nn.Module):
    """Per-word character BiLSTM, final states of both directions (Lample et al., 2016)."""

    def __init__(self, num_chars: int, char_dim: int, channels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.lstm = nn.LSTM(char_dim, channels // 2, batch_first=True, bidirectional=True)
        self.output_dim = 2 * (channels // 2)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """(words, max_chars) → (words, output_dim)."""
        lengths = (chars != 0).sum(1)
        output = torch.zeros(chars.size(0), self.output_dim, device=chars.device)
        real = lengths > 0
        if bool(real.any()):
            packed = pack_padded_sequence(
                self.embedding(chars[real]),
                lengths[real].cpu(),
                batch_first=True,
                enforce_sorted=False,
            )
            # (2, words, channels // 2)
            _, (hidden, _) = self.lstm(packed)
            output[real] = torch.cat([hidden[0], hidden[1]], dim=1)
        return output


class Tagger(nn.Module):
    """Sequence tagger; build from a :class:`TaggerConfig`, then load weights.

    Stages: :meth:`features` → :meth:`encode` → :meth:`emissions` → :meth:`decode`, and for
    a model with an intent head (``config.num_intents > 0``) :meth:`encode` →
    :meth:`intent_logits` too; :meth:`loss` for training. Each stage takes the previous one's
    tensors, so inference can hand :meth:`encode` features gathered from a word cache built
    on :meth:`word_vectors`.
    """

    def __init__(self, config: TaggerConfig, allowed: set[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.config = config
        self.word_embedding = nn.Embedding(config.num_words, config.word_dim, padding_idx=0)
        self.casing_embedding = nn.Embedding(8, config.casing_dim, padding_idx=0)
        self.char_encoder: nn.Module | None
        char_dim = 0
        if config.char_encoder == "cnn":
            self.char_encoder = CharCNN(
                config.num_chars, config.char_dim, config.char_channels, config.char_kernel
            )
            char_dim = self.char_encoder.output_dim
        elif config.char_encoder == "lstm":
            self.char_encoder = CharLSTM(config.num_chars, config.char_dim, config.char_channels)
            char_dim = self.char_encoder.output_dim
        else:
            self.char_encoder = None
        input_dim = config.word_dim + config.casing_dim + char_dim
        rnn_class = nn.LSTM if config.rnn == "lstm" else nn.GRU
        self.rnn = rnn_class(
            input_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        state_dim = directions * config.hidden_size
        self.emission = nn.Linear(state_dim, config.num_tags)
        self.crf = CRF(config.num_tags, allowed) if config.decoder == "crf" else None
        # The sentence-level head (many-to-one over the same states): attention pooling
        # beside max pooling, then a linear layer. Absent without intents, so artifacts
        # without the head keep exactly their weights.
        self.intent_attention: nn.Linear | None = None
        self.intent_output: nn.Linear | None = None
        if config.num_intents > 0:
            self.intent_attention = nn.Linear(state_dim, 1)
            self.intent_output = nn.Linear(2 * state_dim, config.num_intents)

    @property
    def input_dim(self) -> int:
        """Width of a word's input vector (word + casing + character features)."""
        return int(self.rnn.input_size)

    def word_vectors(
        self, words: torch.Tensor, casing: torch.Tensor, chars: torch.Tensor
    ) -> torch.Tensor:
        """Input vectors of N real words, (N, input_dim), from (N,), (N,) and (N, max_chars).

        A word's vector depends on the word alone (dropout comes later), which is what lets
        inference memoise it (:mod:`model.feature_cache`) and skip :meth:`features`.
        """
        vectors = [self.word_embedding(words), self.casing_embedding(casing)]
        if self.char_encoder is not None:
            vectors.append(self.char_encoder(chars))
        return torch.cat(vectors, dim=1)

    def features(self, batch: EncodedBatch) -> torch.Tensor:
        """Padded word input vectors (batch, seq_len, input_dim), zeros at padding."""
        mask = batch.mask
        # Encode real words only: padded slots can outnumber them several times over.
        real = self.word_vectors(batch.words[mask], batch.casing[mask], batch.chars[mask])
        features = real.new_zeros(*mask.shape, real.size(1))
        features[mask] = real
        return features

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        """The recurrent encoder's states over :meth:`features` (or the word cache's)."""
        features = self.dropout(features)
        lengths = lengths.cpu()
        if bool((lengths == features.size(1)).all()):
            # No padding (always so for one sentence): packing would only add overhead.
            states, _ = self.rnn(features)
            return Encoded(states, lengths, features.size(1))
        # Longest first already (the predictor sorts so): packing needs no reordering copy.
        longest_first = bool((lengths[:-1] >= lengths[1:]).all())
        if longest_first and self._runs_apply(features):
            states = self._encode_in_runs(features, lengths)
            packed = pack_padded_sequence(states, lengths, batch_first=True)
            return Encoded(packed, lengths, features.size(1))
        packed = pack_padded_sequence(
            features, lengths, batch_first=True, enforce_sorted=longest_first
        )
        packed_states, _ = self.rnn(packed)
        return Encoded(packed_states, lengths, features.size(1))

    def _runs_apply(self, features: torch.Tensor) -> bool:
        """Whether :meth:`_encode_in_runs` serves this call: inference on the CPU with a
        one-layer float32 BiLSTM (training, distillation's teacher under ``no_grad``, GRUs
        and quantized LSTMs take the packed path)."""
        rnn = self.rnn
        return (
            torch.is_inference_mode_enabled()
            and not self.training
            and type(rnn) is nn.LSTM
            and rnn.num_layers == 1
            and rnn.bidirectional
            and rnn.bias
            and features.device.type == "cpu"
            and features.dtype == torch.float32
            and torch.backends.mkldnn.is_available()
        )

    def _encode_in_runs(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """BiLSTM states (batch, seq_len, 2 * hidden) of longest-first padded sentences,
        meaningful at real tokens only, through torch's padded (oneDNN) LSTM kernel.

        On the CPU torch runs a packed LSTM step by step (a matrix product and five gate
        kernels per step), a padded one through oneDNN's fused kernel, far faster per token
        (``bench.predictor_ab``); padded input costs the padding, though, and breaks the
        backward direction.
        So the batch is cut into runs of similar lengths (padding at most half the real
        tokens), and in each run the forward direction reads the padded run as it is (padding
        comes after the tokens), the backward one each sentence reversed within its length.
        """
        rnn = self.rnn
        hidden = rnn.hidden_size
        sizes = lengths.tolist()
        states = features.new_empty(features.size(0), sizes[0], 2 * hidden)
        start = 0
        while start < len(sizes):
            width, stop, real = sizes[start], start + 1, sizes[start]
            while stop < len(sizes) and width * (stop + 1 - start) <= 1.5 * (real + sizes[stop]):
                real += sizes[stop]
                stop += 1
            run = features[start:stop, :width]
            if sizes[stop - 1] == width:
                states[start:stop, :width] = rnn(run)[0]
            else:
                run_lengths = lengths[start:stop, None]
                positions = torch.arange(width).expand(stop - start, width)
                # Each sentence's own positions reversed; padding stays where it is.
                flip = torch.where(positions < run_lengths, run_lengths - 1 - positions, positions)
                flip = flip.unsqueeze(2)
                reversed_run = run.gather(1, flip.expand(-1, -1, run.size(2)))
                states[start:stop, :width, :hidden] = self._direction(run, "")
                backward = self._direction(reversed_run, "_reverse")
                states[start:stop, :width, hidden:] = backward.gather(
                    1, flip.expand(-1, -1, hidden)
                )
            start = stop
        return states

    def _direction(self, inputs: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction of the BiLSTM (``suffix`` "" or "_reverse") over padded ``inputs``,
        with the module's own parameters (no copies to go stale while training)."""
        rnn = self.rnn
        weights = [
            getattr(rnn, f"{name}_l0{suffix}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        zeros = inputs.new_zeros(1, inputs.size(0), rnn.hidden_size)
        states, _, _ = torch.lstm(inputs, (zeros, zeros), weights, True, 1, 0.0, False, False, True)
        return states

    def emissions(self, encoded: Encoded) -> torch.Tensor:
        """Tag scores (batch, seq_len, num_tags)."""
        if not isinstance(encoded.states, PackedSequence):
            return self.emission(self.dropout(encoded.states))
        # The output layer on real tokens only, then padding (with zeros) back in.
        scores = self.emission(self.dropout(encoded.states.data))
        emissions, _ = pad_packed_sequence(
            encoded.states._replace(data=scores),
            batch_first=True,
            total_length=encoded.total_length,
        )
        return emissions

    def intent_logits(self, encoded: Encoded) -> torch.Tensor:
        """Sentence-level intent scores (batch, num_intents); only for a model with the head."""
        if self.intent_attention is None or self.intent_output is None:
            raise ValueError("this model has no intent head (config.num_intents is 0)")
        states = encoded.padded()
        mask = padding_mask(encoded.lengths.to(states.device), states.size(1))
        weights = self.intent_attention(states).squeeze(2).masked_fill(~mask, float("-inf"))
        attended = (weights.softmax(dim=1).unsqueeze(2) * states).sum(dim=1)
        strongest = states.masked_fill(~mask.unsqueeze(2), float("-inf")).max(dim=1).values
        pooled = torch.cat([attended, strongest], dim=1)
        return self.intent_output(self.dropout(pooled))

    def loss(
        self,
        batch: EncodedBatch,
        tags: torch.Tensor,
        intents: torch.Tensor | None = None,
        tag_weight: float = 1.0,
        intent_weight: float = 1.0,
    ) -> torch.Tensor:
        """Mean negative log-likelihood per sentence (CRF) or per token (softmax); with
        ``intents`` (and an intent head) plus ``intent_weight`` times the intent
        cross-entropy, so both heads train jointly on one encoder."""
        encoded = self.encode(self.features(batch), batch.lengths)
        emissions = self.emissions(encoded)
        mask = batch.mask
        if self.crf is not None:
            tag_loss = -self.crf.log_likelihood(emissions, tags, mask).mean()
        else:
            tag_loss = nn.functional.cross_entropy(emissions[mask], tags[mask])
        if intents is None:
            return tag_loss
        intent_loss = nn.functional.cross_entropy(self.intent_logits(encoded), intents)
        return tag_weight * tag_loss + intent_weight * intent_loss

    def decode(
        self, emissions: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Best tag indices and each one's probability (CRF marginal or softmax), cut to length."""
        if self.crf is not None:
            return self.crf.decode_lengths(emissions, lengths)
        probabilities = emissions.softmax(dim=2)
        best = probabilities.max(dim=2)
        paths = [row[:n] for row, n in zip(best.indices.tolist(), lengths.tolist(), strict=True)]
        scores = [row[:n] for row, n in zip(best.values.tolist(), lengths.tolist(), strict=True)]
        return paths, scores
