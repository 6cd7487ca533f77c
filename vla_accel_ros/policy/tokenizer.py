"""Tokenizers of the token-domain VLA (OpenVLA conventions).

Actions are normalized per dimension with the dataset's 1st/99th percentiles to
[-1, 1], cut into uniform bins, and emitted as the last `n_bins` ids of the
vocabulary, so the distance between two action ids equals their distance in bins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np


class ActionTokenizer:
    """Continuous actions <-> action token ids (q01/q99 -> [-1, 1] -> uniform bins, OpenVLA style).

    It exists because the policy acts in the token domain: its ids are the last `n_bins` of the vocabulary,
    so the distance between two ids is their distance in bins, which speculative acceptance and KERV's
    kinematic threshold rely on. `with_range` re-targets it to another robot's statistics.
    """

    def __init__(
        self, q01: Sequence[float], q99: Sequence[float], vocab_size: int, n_bins: int = 256
    ) -> None:
        self.q01 = np.asarray(q01, dtype=np.float64)
        self.q99 = np.asarray(q99, dtype=np.float64)
        if self.q01.shape != self.q99.shape or self.q01.ndim != 1:
            raise ValueError(f"q01 {self.q01.shape} and q99 {self.q99.shape} must be equal-length vectors")
        if not np.all(np.isfinite(self.q01)) or not np.all(np.isfinite(self.q99)):
            raise ValueError("normalization statistics must be finite")
        if np.any(self.q99 < self.q01):
            raise ValueError("q99 must be >= q01 in every dimension")
        if vocab_size <= n_bins:
            raise ValueError(f"vocab_size {vocab_size} must exceed n_bins {n_bins}")
        self.vocab_size = int(vocab_size)
        self.n_bins = int(n_bins)
        self.first_id = self.vocab_size - self.n_bins
        # Bin b covers [edges[b], edges[b+1]) of the normalized range; centres decode.
        self.edges = np.linspace(-1.0, 1.0, self.n_bins + 1)
        self.centres = (self.edges[:-1] + self.edges[1:]) / 2.0
        # A degenerate dimension (q01 == q99) normalizes to 0 instead of dividing by 0.
        self._span = np.where(self.q99 > self.q01, self.q99 - self.q01, 1.0)

    @property
    def action_dim(self) -> int:
        return int(self.q01.shape[0])

    def with_range(self, q01: Sequence[float], q99: Sequence[float]) -> ActionTokenizer:
        """The same bins and ids over another action range (a robot's own statistics)."""
        return ActionTokenizer(q01, q99, self.vocab_size, self.n_bins)

    @property
    def bin_width(self) -> np.ndarray:
        """Width of one bin in action units, per dimension (for thresholds in action units)."""
        return self._span / self.n_bins

    def normalize(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        return np.clip(2.0 * (a - self.q01) / self._span - 1.0, -1.0, 1.0)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        return (np.asarray(normalized, dtype=np.float64) + 1.0) / 2.0 * self._span + self.q01

    def to_bins(self, action: np.ndarray) -> np.ndarray:
        n = self.normalize(action)
        return np.clip(np.digitize(n, self.edges) - 1, 0, self.n_bins - 1).astype(np.int64)

    def encode(self, action: np.ndarray) -> np.ndarray:
        return self.bin_to_id(self.to_bins(action))

    def decode(self, ids: np.ndarray) -> np.ndarray:
        bins = self.id_to_bin(ids)
        return self.unnormalize(self.centres[bins]).astype(np.float32)

    def bin_to_id(self, bins: np.ndarray) -> np.ndarray:
        return np.asarray(bins, dtype=np.int64) + self.first_id

    def id_to_bin(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if np.any(ids < self.first_id) or np.any(ids >= self.vocab_size):
            raise ValueError(f"ids outside the action range [{self.first_id}, {self.vocab_size})")
        return ids - self.first_id


_WORD = re.compile(r"[a-z0-9]+")


class PromptTokenizer:
    """Word-level tokenizer over a fixed vocabulary stored with the checkpoint.

    The built-in model only ever sees short task instructions, so a word vocabulary
    keeps prompts to a handful of tokens; unknown words map to <unk> instead of failing.
    """

    PAD, BOS, UNK, ACT = "<pad>", "<bos>", "<unk>", "<act>"
    SPECIALS = (PAD, BOS, UNK, ACT)

    def __init__(self, words: Sequence[str]) -> None:
        self.vocab = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> PromptTokenizer:
        words = sorted({w for t in texts for w in _WORD.findall(t.lower())})
        return cls(words)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, length: int) -> list[int]:
        """[<pad>...] <bos> words... <act>, exactly `length` ids.

        A fixed length keeps the prefix the same size for every task, so batches need
        no attention mask and the action tokens always sit at the same positions.
        The model emits the first action token after <act>.
        """
        if length < 2:
            raise ValueError("prompt length must leave room for <bos> and <act>")
        unk = self.index[self.UNK]
        words = [self.index.get(w, unk) for w in _WORD.findall(text.lower())][: length - 2]
        ids = [self.index[self.BOS], *words, self.index[self.ACT]]
        return [self.index[self.PAD]] * (length - len(ids)) + ids
