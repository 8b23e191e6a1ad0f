"""Microsoft Research Paraphrase Corpus (MRPC): reader for the original files and the GLUE tsv layout.

Two layouts are read, both tab-separated with a header row:

* the original release, ``msr_paraphrase_train.txt`` (4076 pairs) and ``msr_paraphrase_test.txt``
  (1725 pairs): UTF-8 with a byte-order mark, CRLF line ends, columns
  ``Quality  #1 ID  #2 ID  #1 String  #2 String`` (Quality 1: paraphrase, 0: not);
* GLUE's ``MRPC/train.tsv`` and ``dev.tsv`` with the same five columns (GLUE splits the original
  training file into train and dev). GLUE's ``test.tsv`` has ``index`` instead of ``Quality`` and no
  labels: it is read with ``labels=None`` and refused wherever labels are needed.

The strings contain quote characters (``"the witness"``), so rows are split on tabs only, never with
``csv`` quoting rules, which would merge lines at an unbalanced quote. A malformed row raises
:class:`MRPCFormatError` naming the file and the 1-based line number.

:func:`load_mrpc` finds the data under ``data_dir(root) / "mrpc"``: the original files (checked against
their md5 and downloaded when missing and online, via :func:`iwlab.data.download.ensure`), else GLUE's
``train.tsv`` + ``dev.tsv`` (in ``mrpc/`` or ``mrpc/MRPC/``; dev plays the test set, since GLUE's test
labels are not public). :func:`write_mrpc` writes either layout (fixtures, round trips).

Source: Dolan & Brockett (2005); the paraphrase task of Byrd & Lipton (2019, Sec. 3, Figure 6).

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> split = MRPCSplit([1, 0], ["1", "3"], ["2", "4"], ['He said "hi".', "A"], ["He greeted.", "B"])
    >>> p = write_mrpc(d / "msr_paraphrase_train.txt", split)
    >>> read_mrpc(p).labels, read_mrpc(p).s1[0]
    ([1, 0], 'He said "hi".')
"""

from __future__ import annotations

import numbers
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from iwlab.data.download import DownloadError, data_dir, ensure

__all__ = [
    "GLUE_FILES",
    "HEADER",
    "ORIGINAL_FILES",
    "MRPCFormatError",
    "MRPCSplit",
    "find_mrpc",
    "load_mrpc",
    "make_fixture",
    "read_mrpc",
    "write_mrpc",
]

HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
GLUE_TEST_HEADER = ("index", "#1 ID", "#2 ID", "#1 String", "#2 String")
ORIGINAL_FILES = ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt")
GLUE_FILES = ("train.tsv", "dev.tsv")
BOM = "\ufeff"


class MRPCFormatError(ValueError):
    """A row or header of an MRPC file is not in the expected layout (message: file, line, what is wrong)."""


@dataclass
class MRPCSplit:
    """One split: parallel lists of labels (1 paraphrase, 0 not; ``None`` for GLUE's unlabeled test),
    sentence ids and sentences.

    Raises:
        ValueError: columns of different lengths, or a label that is not the int 0 or 1.

    Example:
        >>> s = MRPCSplit([1, 0, 1], ["a", "b", "c"], ["d", "e", "f"], ["x", "y", "z"], ["u", "v", "w"])
        >>> len(s), s.positive_fraction, s.subset([2, 0]).id1
        (3, 0.6666666666666666, ['c', 'a'])
    """

    labels: list[int] | None
    id1: list[str]
    id2: list[str]
    s1: list[str]
    s2: list[str]
    path: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        n = len(self.s1)
        lens = [len(self.id1), len(self.id2), len(self.s2)] + ([len(self.labels)] if self.labels is not None else [])
        if any(k != n for k in lens):
            raise ValueError(f"MRPCSplit columns differ in length: {[n, *lens]}")
        for i, v in enumerate(self.labels or []):
            # bool or float labels would be written as "True" / "1.0", which no MRPC reader accepts
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v not in (0, 1):
                raise ValueError(f"MRPCSplit labels must be the ints 0 or 1, got {v!r} at index {i}")

    def __len__(self) -> int:
        return len(self.s1)

    @property
    def positive_fraction(self) -> float:
        """Fraction of pairs labelled paraphrase (NaN when empty or unlabeled)."""
        if not self.labels:
            return float("nan")
        return sum(self.labels) / len(self.labels)

    def subset(self, index: list[int]) -> MRPCSplit:
        """The pairs at ``index``, in that order.

        Args:
            index: positions into the split (repeats allowed).

        Returns:
            A new :class:`MRPCSplit` with the same ``path``.

        Raises:
            IndexError: a position is out of range.
        """
        pick = lambda xs: [xs[i] for i in index]  # noqa: E731
        labels = pick(self.labels) if self.labels is not None else None
        return MRPCSplit(labels, pick(self.id1), pick(self.id2), pick(self.s1), pick(self.s2), self.path)

    def require_labels(self) -> list[int]:
        """The labels, or a clear error for an unlabeled split (GLUE's test.tsv).

        Returns:
            The labels (ints 0 or 1).

        Raises:
            MRPCFormatError: the split has no labels.
        """
        if self.labels is None:
            raise MRPCFormatError(
                f"{self.path or 'this MRPC split'} has no labels (GLUE's test.tsv has 'index' instead of "
                "'Quality'); use the original msr_paraphrase_test.txt or GLUE's dev.tsv as the test set"
            )
        return self.labels


def read_mrpc(path: str | os.PathLike[str]) -> MRPCSplit:
    """Read one MRPC file in the original or the GLUE layout (the header tells which).

    Accepts a UTF-8 byte-order mark and LF or CRLF line ends; blank lines at the end are ignored.

    Args:
        path: an original ``msr_paraphrase_*.txt`` or a GLUE ``*.tsv`` file.

    Returns:
        :class:`MRPCSplit` with ``path`` set; ``labels`` is None for GLUE's test layout.

    Raises:
        MRPCFormatError: unknown header, a row without 5 tab-separated fields, a label other than 0/1,
            an empty id or sentence, a blank line in the middle; the message names the file and the line.
            Also a file that is not UTF-8 text (gzip-compressed, UTF-16, other encodings, CR-only line
            ends): one line naming the file and what to do. gzip is not read transparently: decompress it.

    Example:
        >>> import tempfile
        >>> p = write_mrpc(Path(tempfile.mkdtemp()) / "train.tsv", MRPCSplit([1], ["1"], ["2"], ["A b."], ["B a."]))
        >>> read_mrpc(p).labels  # the real msr_paraphrase_train.txt: 4076 pairs, positive_fraction 0.6747
        [1]
    """
    path = Path(path)
    text = _read_text(path)
    # split on \n only: str.splitlines() would also split on \x0b, \x1c, \u2028 etc. inside a sentence
    lines = text.split("\n")
    while lines and lines[-1].strip("\r") == "":
        lines.pop()
    if not lines:
        raise MRPCFormatError(f"{path}: empty file (expected a header row {_tabbed(HEADER)})")
    header = tuple(h.strip() for h in lines[0].rstrip("\r").split("\t"))
    if header == HEADER:
        labelled = True
    elif header == GLUE_TEST_HEADER:
        labelled = False
    else:
        raise MRPCFormatError(
            f"{path}, line 1: unexpected header {_tabbed(header)}; expected {_tabbed(HEADER)} "
            f"(or GLUE test's {_tabbed(GLUE_TEST_HEADER)})"
        )
    labels: list[int] = []
    id1: list[str] = []
    id2: list[str] = []
    s1: list[str] = []
    s2: list[str] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw[:-1] if raw.endswith("\r") else raw
        fields = line.split("\t")
        if len(fields) != 5:
            what = "blank line" if not line.strip() else f"{len(fields)} tab-separated fields"
            raise MRPCFormatError(f"{path}, line {lineno}: expected 5 tab-separated fields, got {what}: {line[:80]!r}")
        first, a, b, x, y = fields
        if labelled:
            if first.strip() not in ("0", "1"):
                raise MRPCFormatError(f"{path}, line {lineno}: Quality must be 0 or 1, got {first!r}")
            labels.append(int(first))
        elif not first.strip().isdigit():
            raise MRPCFormatError(f"{path}, line {lineno}: index must be an integer, got {first!r}")
        if not a.strip() or not b.strip():
            raise MRPCFormatError(f"{path}, line {lineno}: empty sentence id")
        if not x.strip() or not y.strip():
            # a pair with a missing sentence is a broken row (shifted columns), not a trainable example
            raise MRPCFormatError(f"{path}, line {lineno}: empty sentence")
        id1.append(a.strip())
        id2.append(b.strip())
        s1.append(x)
        s2.append(y)
    return MRPCSplit(labels if labelled else None, id1, id2, s1, s2, str(path))


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raise MRPCFormatError(f"{path} is gzip-compressed; decompress it first (gunzip), MRPC files are UTF-8 text")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise MRPCFormatError(f"{path} is UTF-16 text; re-save it as UTF-8 (as Microsoft ships MRPC)")
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0  # the original files start with a UTF-8 BOM
    try:
        text = raw[bom:].decode("utf-8")  # bytes, not text mode: \r stays, so CRLF and LF both parse below
    except UnicodeDecodeError as e:
        at = bom + e.start
        line = raw[:at].count(b"\n") + 1
        raise MRPCFormatError(
            f"{path}, line {line}: not UTF-8 text (byte {raw[at : at + 1]!r} at offset {at}); re-save the file as UTF-8"
        ) from None
    if "\n" not in text and "\r" in text.rstrip("\r"):
        raise MRPCFormatError(f"{path}: CR-only line ends (classic Mac); convert them to LF or CRLF")
    return text


def _tabbed(cols: tuple[str, ...]) -> str:
    # repr keeps a header read from a damaged file (control characters, \r) on one line
    text = "<TAB>".join(cols)
    return repr(text if len(text) <= 200 else text[:200] + "...")


def write_mrpc(
    path: str | os.PathLike[str],
    split: MRPCSplit,
    layout: Literal["original", "glue"] = "original",
) -> Path:
    """Write a split: ``original`` (BOM, CRLF, as Microsoft ships it) or ``glue`` (no BOM, LF).

    An unlabeled split is written with GLUE's test header (``index`` column). Sentences must not
    contain tabs or newlines (the format has no escaping).

    Args:
        path: destination file (its folder is created if missing).
        split: the pairs to write.
        layout: ``"original"`` (UTF-8 BOM, CRLF) or ``"glue"`` (no BOM, LF).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown ``layout``, or a field holding a tab or a line break.

    Example:
        >>> import tempfile
        >>> s = MRPCSplit(None, ["1"], ["2"], ["A b."], ["B a."])  # unlabeled: GLUE test header
        >>> write_mrpc(Path(tempfile.mkdtemp()) / "test.tsv", s, layout="glue").read_text()[:5]
        'index'
    """
    if layout not in ("original", "glue"):
        raise ValueError(f"layout must be 'original' or 'glue', got {layout!r}")
    for s in (*split.s1, *split.s2, *split.id1, *split.id2):
        if "\t" in s or "\n" in s or "\r" in s:
            raise ValueError(f"MRPC fields cannot hold tabs or line breaks: {s[:60]!r}")
    header = HEADER if split.labels is not None else GLUE_TEST_HEADER
    firsts = [str(int(v)) for v in split.labels] if split.labels is not None else [str(i) for i in range(len(split))]
    rows = ["\t".join(header)]
    rows += ["\t".join(r) for r in zip(firsts, split.id1, split.id2, split.s1, split.s2, strict=True)]
    eol, bom = ("\r\n", BOM) if layout == "original" else ("\n", "")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:  # newline="": write \r\n as given
        f.write(bom + eol.join(rows) + eol)
    return path


def find_mrpc(root: str | os.PathLike[str] | None = None, download: bool = True) -> tuple[Path, Path]:
    """``(train_file, test_file)`` under ``data_dir(root) / "mrpc"``.

    Order: the original files (md5-checked, downloaded when missing and ``download``), else GLUE's
    ``train.tsv`` + ``dev.tsv`` in ``mrpc/`` or ``mrpc/MRPC/`` (not checksummed: GLUE copies differ).

    Args:
        root: the data root (``root``, else ``$IWLAB_DATA``, else ``~/.cache/iwlab``).
        download: fetch the original files when neither layout is present.

    Returns:
        ``(train_file, test_file)`` paths.

    Raises:
        FileNotFoundError: neither layout is present and ``download`` is false or fails.
        ChecksumError: an original file's md5 differs from the registered one.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp(); _ = make_fixture(Path(root) / "mrpc", 4, 2)
        >>> [p.name for p in find_mrpc(root, download=False)]  # real data: the msr_paraphrase_*.txt files
        ['train.tsv', 'dev.tsv']
    """
    folder = data_dir(root) / "mrpc"
    if all((folder / f).is_file() for f in ORIGINAL_FILES):
        ensure("mrpc", root, download=False)  # verifies both md5s
        return folder / ORIGINAL_FILES[0], folder / ORIGINAL_FILES[1]
    for sub in (folder, folder / "MRPC"):
        if all((sub / f).is_file() for f in GLUE_FILES):
            return sub / GLUE_FILES[0], sub / GLUE_FILES[1]
    hint = (
        f"put msr_paraphrase_train.txt and msr_paraphrase_test.txt (or GLUE's train.tsv and dev.tsv) into "
        f"{folder}, or set IWLAB_DATA to a folder whose mrpc/ subfolder has them"
    )
    if not download:
        raise FileNotFoundError(f"MRPC not found in {folder}; {hint}")
    try:
        ensure("mrpc", root, download=True)
    except DownloadError as e:
        raise FileNotFoundError(f"MRPC not found in {folder} and the download failed ({e}); {hint}") from None
    return folder / ORIGINAL_FILES[0], folder / ORIGINAL_FILES[1]


def load_mrpc(root: str | os.PathLike[str] | None = None, download: bool = True) -> tuple[MRPCSplit, MRPCSplit]:
    """``(train, test)`` splits found by :func:`find_mrpc`, both labelled.

    Args:
        root: the data root, as for :func:`find_mrpc`.
        download: fetch the original files when missing.

    Returns:
        ``(train, test)`` :class:`MRPCSplit` s (4076 and 1725 pairs in the original release).

    Raises:
        FileNotFoundError, ChecksumError: as :func:`find_mrpc`.
        MRPCFormatError: a malformed file, or a split without labels.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp(); _ = make_fixture(Path(root) / "mrpc", 6, 3)
        >>> [len(s) for s in load_mrpc(root, download=False)]  # original release: [4076, 1725]
        [6, 3]
    """
    train_path, test_path = find_mrpc(root, download)
    train, test = read_mrpc(train_path), read_mrpc(test_path)
    train.require_labels()
    test.require_labels()
    return train, test


# a small vocabulary for the generated fixture: paraphrases share most words, non-paraphrases do not
_WORDS = (
    "the company said shares rose fell percent on monday tuesday market stock investors bank police court "
    "officials government report year million city state president minister people new old first last week "
    "today yesterday announced reported expected trading analysts price sales quarter profit loss"
).split()


def make_fixture(
    folder: str | os.PathLike[str],
    n_train: int = 32,
    n_test: int = 16,
    layout: Literal["original", "glue"] = "glue",
    seed: int = 0,
) -> Path:
    """Write a tiny generated stand-in for MRPC into ``folder`` (for tests and CI) and return ``folder``.

    Paraphrase pairs are a sentence and a light shuffle of it; non-paraphrases are two unrelated sentences,
    so a small model can fit them. ``layout="glue"`` writes ``train.tsv``/``dev.tsv`` (not checksummed, so
    a fixture can stand in for the data); ``"original"`` writes the original file names (which then fail
    :func:`find_mrpc`'s md5 check, as they should). Sentences carry quote characters, as the real ones do.

    Args:
        folder: destination folder (created if missing).
        n_train: training pairs.
        n_test: test (dev) pairs.
        layout: ``"glue"`` or ``"original"`` file names and format.
        seed: seed of the ``random.Random`` that draws the sentences.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile
        >>> d = make_fixture(tempfile.mkdtemp(), 8, 4)
        >>> len(read_mrpc(d / "train.tsv")), len(read_mrpc(d / "dev.tsv"))
        (8, 4)
    """
    rng = random.Random(seed)
    folder = Path(folder)

    def sentence() -> list[str]:
        return rng.sample(_WORDS, rng.randint(6, 12))

    def split(n: int, start: int) -> MRPCSplit:
        labels, id1, id2, s1, s2 = [], [], [], [], []
        for i in range(n):
            a = sentence()
            label = int(rng.random() < 0.67)  # MRPC is about 2/3 paraphrases
            if label:
                b = a[:]
                j = rng.randrange(len(b) - 1)
                b[j], b[j + 1] = b[j + 1], b[j]
            else:
                b = sentence()
            labels.append(label)
            id1.append(str(start + 2 * i))
            id2.append(str(start + 2 * i + 1))
            s1.append(f'"{a[0].capitalize()}" ' + " ".join(a[1:]) + ".")
            s2.append(f'"{b[0].capitalize()}" ' + " ".join(b[1:]) + ".")
        return MRPCSplit(labels, id1, id2, s1, s2)

    names = GLUE_FILES if layout == "glue" else ORIGINAL_FILES
    write_mrpc(folder / names[0], split(n_train, 1000), layout)
    write_mrpc(folder / names[1], split(n_test, 9000), layout)
    return folder
