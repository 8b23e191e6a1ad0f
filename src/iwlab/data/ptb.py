"""Word-level Penn Treebank (Mikolov's preprocessing) as next-word prediction examples with 20 words of context.

Files, in ``data_dir(root) / "ptb"``: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` (md5s in
``RESOURCES["ptb"]``). Each line is one sentence of space-separated words; rare words are already
``<unk>`` and numbers ``N``.

Construction (Katharopoulos & Fleuret 2017, §4.3: "we split the dataset into sentences and add an End of
sentence token ... For each word we use the previous 20 words, if available, as context"):

* Vocabulary: the sorted set of training words plus ``<eos>``. The real training file has 9,999
  distinct words (``<unk>`` included), so this is **10,000** predictable ids ``0..9999``
  (:data:`PTB_VOCAB_SIZE`). The paper's "vocabulary of 10,001 words" counts the padding symbol too: the
  authors' Keras model had ``Embedding(vocab_size + 1, ...)`` with index 0 reserved for masking. Here the
  embedding likewise has 10,001 rows and the output layer 10,000 classes. Valid/test words outside the
  vocabulary map to ``<unk>`` (none occur in the real files).
* Each line becomes ``words + [<eos>]``; empty lines are skipped.
* **Context never crosses a sentence boundary**: every token of a sentence except the first is one
  example whose target ``y`` is that token (``<eos>`` included) and whose input ``x`` is the up to
  ``context`` preceding tokens *of the same sentence*. The first word of a sentence has no context and
  is not an example. This is what the authors' code did (``PennTreeBank._encode``), and it is the
  reading of "if available". Real data: 887,521 training examples (= the number of training words), 70,390
  validation, 78,669 test.
* Shorter contexts are **left-padded** with :attr:`PtbData.pad_index` ``= len(vocab)`` (10,000 on real
  data): not a vocabulary word and never a target. So ``x[:, -1]`` is always the word just before the
  target, and the model's embedding needs ``len(vocab) + 1`` rows. (The authors right-padded with
  index 0 and relied on Keras masking; :class:`iwlab.models.lm.LSTMLanguageModel` masks the padding.)
* ``x`` is ``int64 (N, context)`` and ``y`` ``int64 (N,)``: the training inputs take about 142 MB, which
  is fine; keeping int64 spares every caller a per-batch conversion.

Example:
    >>> import tempfile; d = make_fixture(tempfile.mkdtemp())
    >>> data = read_ptb_dir(d, context=3)
    >>> [data.vocab[i] for i in data.x_train[1].tolist() if i != data.pad_index], data.vocab[data.y_train[1]]
    (['the', 'cat'], 'sat')
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from iwlab.data.download import data_dir, ensure

__all__ = ["EOS", "PTB_VOCAB_SIZE", "SPLITS", "UNK", "PtbData", "encode", "load_ptb", "make_fixture", "read_ptb_dir"]

EOS = "<eos>"
UNK = "<unk>"
PTB_VOCAB_SIZE = 10_000  # 9,999 distinct words of Mikolov's PTB train + <eos>; the pad index is this number
SPLITS = ("train", "valid", "test")


@dataclass
class PtbData:
    """Vocabulary and next-word examples of each split: ``x_* (N, context) int64``, ``y_* (N,) int64``.

    ``pad_index == len(vocab)`` fills the left of contexts shorter than ``context``.

    Attributes:
        vocab: the sorted training words plus ``<eos>`` (10,000 on the real data); id = position.
        word_to_id: inverse of ``vocab``.
        pad_index: ``len(vocab)``, the left padding of short contexts (never a target).
        eos_index: id of ``<eos>``.
        context: words of context per example (20 in Katharopoulos & Fleuret 2017, Sec. 4.3).
        x_train, x_valid, x_test: ``(N, context) int64`` left-padded contexts.
        y_train, y_valid, y_test: ``(N,) int64`` next-word ids in ``[0, len(vocab))``.
    """

    vocab: list[str]
    word_to_id: dict[str, int]
    pad_index: int
    eos_index: int
    context: int
    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def vocab_size(self) -> int:
        """Number of predictable tokens (10,000 on the real data); the pad index is this number."""
        return len(self.vocab)


def _read_sentences(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"PTB file missing: {path}; set IWLAB_DATA to a folder whose ptb/ holds ptb.train/valid/test.txt"
        )
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise ValueError(f"{path} is gzip-compressed; decompress it first (gunzip), PTB files are plain UTF-8 text")
    # a byte-order mark would otherwise glue itself to the first word and make a new vocabulary entry
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        raise ValueError(
            f"{path} is not UTF-8 text (byte {raw[at : at + 1]!r} at offset {at}); expected Mikolov's plain-text PTB"
        ) from None
    sentences = [words + [EOS] for words in (line.split() for line in text.splitlines()) if words]
    if not sentences:
        raise ValueError(f"{path} is empty (no words); expected one space-separated sentence per line")
    return sentences


def encode(
    sentences: list[list[str]], word_to_id: dict[str, int], context: int, pad_index: int
) -> tuple[Tensor, Tensor]:
    """Sentences (each ending in ``<eos>``) -> ``x (N, context)``, ``y (N,)`` int64; see the module doc.

    Every token except a sentence's first is one example; its context never crosses the sentence
    boundary (Katharopoulos & Fleuret 2017, Sec. 4.3).

    Args:
        sentences: lists of words, each ending in ``<eos>``.
        word_to_id: the vocabulary; words outside it map to ``<unk>`` when present.
        context: words of context per example (an int >= 1).
        pad_index: the id that left-pads short contexts; must not be a word's id.

    Returns:
        ``x`` ``(N, context) int64`` and ``y`` ``(N,) int64``, ``N`` = number of tokens minus number
        of sentences.

    Raises:
        ValueError: ``context`` is not an int >= 1, ``pad_index`` is a word's id, or a word is out of the
            vocabulary and there is no ``<unk>``.

    Example:
        >>> w = {"a": 0, "b": 1, "<eos>": 2}
        >>> x, y = encode([["a", "b", "<eos>"]], w, context=2, pad_index=3)
        >>> x.tolist(), y.tolist()
        ([[3, 0], [0, 1]], [1, 2])
    """
    if isinstance(context, bool) or not isinstance(context, numbers.Integral) or context < 1:
        raise ValueError(f"context must be an int >= 1, got {context!r}")
    context = int(context)
    if pad_index in set(word_to_id.values()):
        # a pad equal to a word id would silently turn padding into that word
        raise ValueError(f"pad_index {pad_index} is the id of a vocabulary word; use len(vocab)")
    unk = word_to_id.get(UNK)
    ids: list[int] = []
    starts: list[int] = []
    for s in sentences:
        starts.append(len(ids))
        for w in s:
            i = word_to_id.get(w, unk)
            if i is None:
                raise ValueError(f"word {w!r} is not in the vocabulary and there is no {UNK} token")
            ids.append(i)
    tok = np.asarray(ids, dtype=np.int64)  # (T,) all tokens, sentences back to back
    start_of = np.repeat(np.asarray(starts, dtype=np.int64), [len(s) for s in sentences])  # (T,)
    pos = np.flatnonzero(np.arange(len(tok)) != start_of)  # (N,) every token but a sentence's first
    x = np.empty((len(pos), context), dtype=np.int64)
    chunk = 1 << 16
    offsets = np.arange(-context, 0, dtype=np.int64)  # (context,) -context..-1
    for a in range(0, len(pos), chunk):
        p = pos[a : a + chunk]
        src = p[:, None] + offsets  # (n, context) indices of the preceding tokens
        inside = src >= start_of[p][:, None]  # same sentence only
        x[a : a + chunk] = np.where(inside, tok[np.maximum(src, 0)], pad_index)
    return torch.from_numpy(x), torch.from_numpy(tok[pos])


def read_ptb_dir(directory: str | os.PathLike[str], context: int = 20) -> PtbData:
    """Build :class:`PtbData` from ``ptb.{train,valid,test}.txt`` in ``directory`` (no checksum check).

    Files are UTF-8 text (a byte-order mark is ignored), one sentence of space-separated words per line.

    Args:
        directory: folder holding ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt``.
        context: words of context per example (20 in the paper).

    Returns:
        :class:`PtbData`; the vocabulary is built from the training file.

    Raises:
        FileNotFoundError: a file is missing (the message names it and ``IWLAB_DATA``).
        ValueError: one line naming the file: gzip-compressed, not UTF-8, or empty (no words); or a bad
            ``context``, or a valid/test word outside the vocabulary when the training file has no ``<unk>``.

    Example:
        >>> import tempfile; data = read_ptb_dir(make_fixture(tempfile.mkdtemp()))
        >>> data.x_train.shape[1], data.vocab[data.eos_index]
        (20, '<eos>')
    """
    if isinstance(context, bool) or not isinstance(context, numbers.Integral) or context < 1:
        raise ValueError(f"context must be an int >= 1, got {context!r}")
    directory = Path(directory)
    sents = {s: _read_sentences(directory / f"ptb.{s}.txt") for s in SPLITS}
    vocab = sorted({w for s in sents["train"] for w in s})  # includes <eos>
    word_to_id = {w: i for i, w in enumerate(vocab)}
    pad = len(vocab)
    enc = {s: encode(sents[s], word_to_id, context, pad) for s in SPLITS}
    return PtbData(
        vocab=vocab,
        word_to_id=word_to_id,
        pad_index=pad,
        eos_index=word_to_id[EOS],
        context=context,
        x_train=enc["train"][0],
        y_train=enc["train"][1],
        x_valid=enc["valid"][0],
        y_valid=enc["valid"][1],
        x_test=enc["test"][0],
        y_test=enc["test"][1],
    )


def load_ptb(
    root: str | os.PathLike[str] | None = None, download: bool = False, context: int = 20, *, verify: bool = True
) -> PtbData:
    """PTB from ``data_dir(root) / "ptb"``: md5-verified (downloaded first if ``download``), then encoded.

    Args:
        root: the data root (``root``, else ``$IWLAB_DATA``, else ``~/.cache/iwlab``; see
            :func:`iwlab.data.download.data_dir`).
        download: fetch missing files (about 5 MB) first.
        context: words of context per example (20 in Katharopoulos & Fleuret 2017, Sec. 4.3).
        verify: check every md5. ``verify=False`` skips the check (for fixtures such as
            :func:`make_fixture`'s); it never downloads.

    Returns:
        :class:`PtbData` (vocabulary 10,000 and 887,521 training examples on the real data).

    Raises:
        FileNotFoundError: a file is missing (the message names it and ``IWLAB_DATA``).
        ChecksumError: a file's md5 differs from the registered one (the message names the file).
        ValueError: see :func:`read_ptb_dir`.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp(); _ = make_fixture(Path(root) / "ptb")
        >>> data = load_ptb(root, context=4, verify=False)  # real data (md5-verified): 10000, (887521, 20)
        >>> data.vocab_size, tuple(data.x_train.shape)
        (19, (37, 4))
    """
    folder = ensure("ptb", root=root, download=download) if verify else data_dir(root) / "ptb"
    return read_ptb_dir(folder, context=context)


_FIXTURE = {
    "train": [
        "the cat sat on the mat",
        "a dog ate the <unk>",
        "the dog sat",
        "N cats ate a mat on the dog and the cat sat on N mats with the other <unk> in the house today",
    ],
    "valid": ["the cat ate", "a dog sat on the mat"],
    "test": ["the <unk> sat", "zebra ate the mat"],  # "zebra" is not in train: it becomes <unk>
}


def make_fixture(directory: str | os.PathLike[str]) -> Path:
    """Write a tiny hand-made ``ptb.{train,valid,test}.txt`` (Mikolov's layout) into ``directory``.

    The last training sentence has 22 words, so a 20-word context is truncated there.

    Args:
        directory: destination folder (created if missing).

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile; sorted(p.name for p in make_fixture(tempfile.mkdtemp()).iterdir())
        ['ptb.test.txt', 'ptb.train.txt', 'ptb.valid.txt']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, lines in _FIXTURE.items():
        (directory / f"ptb.{split}.txt").write_text("".join(f" {line} \n" for line in lines), encoding="utf-8")
    return directory
