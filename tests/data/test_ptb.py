import os
from pathlib import Path

import pytest
import torch

from iwlab.data import ptb as P
from iwlab.data.download import RESOURCES, ChecksumError, md5sum


def _write(d, train, valid=("a b",), test=("a",)):
    d.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        (d / f"ptb.{name}.txt").write_text("".join(f" {s} \n" for s in lines))
    return d


def _words(data, row):
    return [data.vocab[i] for i in row.tolist() if i != data.pad_index]


def test_hand_made_corpus_examples(tmp_path):
    d = _write(tmp_path, ["a b c", "d a"], valid=["b d a"], test=["c"])
    data = P.read_ptb_dir(d, context=2)
    assert data.vocab == ["<eos>", "a", "b", "c", "d"]  # sorted, <eos> included; no <unk> in this corpus
    assert data.pad_index == 5 == data.vocab_size and data.eos_index == 0
    # sentence "a b c <eos>": targets b, c, <eos>; "d a <eos>": targets a, <eos>. Context stays in the sentence.
    assert data.x_train.tolist() == [[5, 1], [1, 2], [2, 3], [5, 4], [4, 1]]
    assert data.y_train.tolist() == [2, 3, 0, 1, 0]
    assert data.x_train.dtype == torch.int64 and data.y_train.dtype == torch.int64
    # the test sentence "c <eos>" gives one example
    assert data.x_test.tolist() == [[5, 3]] and data.y_test.tolist() == [0]


def test_unknown_valid_word_without_unk_is_an_error(tmp_path):
    d = _write(tmp_path, ["a b c"], valid=["b zzz"])
    with pytest.raises(ValueError, match="zzz"):
        P.read_ptb_dir(d)


def test_fixture_context_padding_and_unk(tmp_path):
    data = P.read_ptb_dir(P.make_fixture(tmp_path), context=20)
    w = data.word_to_id
    assert "<unk>" in w and "<eos>" in w and data.pad_index == len(data.vocab)
    n_words = sum(len(line.split()) for line in P._FIXTURE["train"])
    assert len(data.y_train) == n_words  # one example per token (words + eos) minus one per sentence
    assert data.x_train.shape == (n_words, 20)
    # padding is only on the left, and the last position is always a real word
    pads = data.x_train == data.pad_index
    assert not pads[:, -1].any()
    assert torch.equal(pads, pads.cummin(dim=1).values)
    assert not (data.y_train == data.pad_index).any()
    # the long last sentence (22 words): the final <eos> sees exactly the 20 previous words
    long = P._FIXTURE["train"][-1].split()
    assert data.y_train[-1].item() == data.eos_index and _words(data, data.x_train[-1]) == long[-20:]
    assert _words(data, data.x_train[-2]) == long[-21:-1] and data.vocab[data.y_train[-2]] == long[-1]
    # the first example of a sentence has one word of context
    assert _words(data, data.x_train[0]) == ["the"] and data.vocab[data.y_train[0]] == "cat"
    # "zebra" is not in the training vocabulary: <unk> in the test split
    assert _words(data, data.x_test[3]) == ["<unk>"] and data.vocab[data.y_test[3]] == "ate"


def test_context_never_crosses_sentences(tmp_path):
    data = P.read_ptb_dir(P.make_fixture(tmp_path), context=20)
    eos_context = (data.x_train[:, :-1] == data.eos_index).any()
    assert not eos_context  # <eos> only ends a sentence; it is never inside a context


def test_load_ptb_checksums(tmp_path):
    P.make_fixture(tmp_path / "ptb")
    with pytest.raises(ChecksumError, match="ptb.train.txt"):
        P.load_ptb(tmp_path)
    data = P.load_ptb(tmp_path, verify=False, context=5)
    assert data.x_valid.shape[1] == 5


def test_missing_file_names_it(tmp_path):
    d = P.make_fixture(tmp_path / "ptb")
    (d / "ptb.valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match="ptb.valid.txt"):
        P.load_ptb(tmp_path, verify=False)
    with pytest.raises(FileNotFoundError, match="ptb.valid.txt"):
        P.load_ptb(tmp_path)


def test_registered_md5s():
    assert {r.filename: r.md5 for r in RESOURCES["ptb"]} == {
        "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
        "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
        "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
    }


@pytest.mark.skipif(not (Path(os.environ.get("IWLAB_DATA", "/nonexistent")) / "ptb").is_dir(), reason="real PTB absent")
def test_real_ptb():
    folder = Path(os.environ["IWLAB_DATA"]) / "ptb"
    for r in RESOURCES["ptb"]:
        assert md5sum(folder / r.filename) == r.md5
    data = P.load_ptb()
    assert data.vocab_size == P.PTB_VOCAB_SIZE == 10_000  # 9,999 words + <eos>; + pad = the paper's 10,001
    assert data.pad_index == 10_000
    assert data.x_train.shape == (887_521, 20) and len(data.y_valid) == 70_390 and len(data.y_test) == 78_669
    assert _words(data, data.x_train[30]) == ["pierre", "<unk>", "N", "years", "old", "will", "join"]
    assert data.vocab[data.y_train[30]] == "the"


# -- item 15: empty, gzipped, BOM and non-UTF-8 files; context -------------------------------------


@pytest.mark.parametrize("content", ["", "  \n\n \t \n"], ids=["empty", "whitespace_only"])
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_empty_file_says_so_naming_it(tmp_path, split, content):
    # old: an empty train file gave "word 'a' is not in the vocabulary"; empty valid/test passed silently
    d = _write(tmp_path, ["a b c"], valid=["a b"], test=["c a"])
    (d / f"ptb.{split}.txt").write_text(content)
    with pytest.raises(ValueError) as e:
        P.read_ptb_dir(d)
    msg = str(e.value)
    assert "\n" not in msg and f"{d / f'ptb.{split}.txt'} is empty (no words)" in msg


def test_gzipped_file_is_named_and_explained(tmp_path):
    import gzip

    d = _write(tmp_path, ["a b c"])
    p = d / "ptb.train.txt"
    p.write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(ValueError) as e:
        P.read_ptb_dir(d)
    msg = str(e.value)
    assert "\n" not in msg and f"{p} is gzip-compressed; decompress it first" in msg


def test_byte_order_mark_is_not_part_of_the_first_word(tmp_path):
    d = _write(tmp_path, ["a b c", "d a"], valid=["b d a"], test=["c"])
    plain = P.read_ptb_dir(d, context=2)
    p = d / "ptb.train.txt"
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    data = P.read_ptb_dir(d, context=2)  # old: "\ufeffa" became a sixth vocabulary word
    assert data.vocab == ["<eos>", "a", "b", "c", "d"] == plain.vocab
    assert data.x_train.tolist() == [[5, 1], [1, 2], [2, 3], [5, 4], [4, 1]]
    assert data.y_train.tolist() == [2, 3, 0, 1, 0]


def test_non_utf8_file_names_file_and_offset(tmp_path):
    d = _write(tmp_path, ["a b c"])
    (d / "ptb.test.txt").write_bytes(b" a caf\xe9 \n")  # Latin-1
    with pytest.raises(ValueError) as e:
        P.read_ptb_dir(d)
    msg = str(e.value)
    assert "\n" not in msg and f"{d / 'ptb.test.txt'} is not UTF-8 text (byte b'\\xe9' at offset 6)" in msg


@pytest.mark.parametrize("context", [0, 2.5, True, "3"])
def test_bad_context_is_refused(tmp_path, context):
    d = _write(tmp_path, ["a b c"])
    with pytest.raises(ValueError, match="context must be an int >= 1"):
        P.read_ptb_dir(d, context=context)
    with pytest.raises(ValueError, match="context must be an int >= 1"):
        P.encode([["a", "<eos>"]], {"a": 0, "<eos>": 1}, context=context, pad_index=2)


def test_pad_index_colliding_with_a_word_is_refused():
    # old: padding silently read as the word "a" (id 0)
    with pytest.raises(ValueError, match="pad_index 0 is the id of a vocabulary word"):
        P.encode([["a", "b", "<eos>"]], {"a": 0, "b": 1, "<eos>": 2}, context=3, pad_index=0)
