"""MRPC reader: both layouts (original with BOM + CRLF, GLUE tsv), malformed rows, data lookup, round trips."""

import pytest

from iwlab.data.download import RESOURCES
from iwlab.data.mrpc import (
    GLUE_FILES,
    ORIGINAL_FILES,
    MRPCFormatError,
    MRPCSplit,
    find_mrpc,
    load_mrpc,
    make_fixture,
    read_mrpc,
    write_mrpc,
)

HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
ROWS = [
    '1\t702876\t702977\tAmrozi accused his brother, whom he called "the witness", of lying.\t'
    'Referring to him as only "the witness", Amrozi accused his brother.',
    "0\t2108705\t2108831\tYucaipa owned Dominick's before selling the chain in 1998.\t"
    "Yucaipa bought Dominick's in 1995 for $ 693 million.",
    '1\t1330381\t1330521\tThe "unbalanced quote here.\tAnd \u00e9l\u00e8ve caf\u00e9 \u2013 unicode.',
]


def _write(path, text, bom=True, eol="\r\n"):
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + eol.join(text).encode("utf-8") + eol.encode())
    return path


def test_original_layout_bom_crlf(tmp_path):
    p = _write(tmp_path / "msr_paraphrase_train.txt", [HEADER, *ROWS])
    s = read_mrpc(p)
    assert s.labels == [1, 0, 1]
    assert s.id1 == ["702876", "2108705", "1330381"] and s.id2 == ["702977", "2108831", "1330521"]
    # quotes are kept verbatim (no csv quoting), no \r or BOM leaks into fields
    assert s.s1[0] == 'Amrozi accused his brother, whom he called "the witness", of lying.'
    assert s.s1[2] == 'The "unbalanced quote here.'
    assert s.s2[2] == "And \u00e9l\u00e8ve caf\u00e9 \u2013 unicode."
    assert not any("\r" in x or "\ufeff" in x for x in s.s1 + s.s2 + s.id1)
    assert s.path == str(p) and len(s) == 3


def test_glue_layout_lf_no_bom(tmp_path):
    p = _write(tmp_path / "train.tsv", [HEADER, *ROWS], bom=False, eol="\n")
    s = read_mrpc(p)
    assert s.labels == [1, 0, 1] and s.s2[1] == "Yucaipa bought Dominick's in 1995 for $ 693 million."


def test_glue_test_has_no_labels(tmp_path):
    rows = [
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "0\t1089874\t1089925\tA b.\tC d.",
        "1\t3019446\t3019327\tE.\tF.",
    ]
    s = read_mrpc(_write(tmp_path / "test.tsv", rows, bom=False, eol="\n"))
    assert s.labels is None and s.id1 == ["1089874", "3019446"]
    with pytest.raises(MRPCFormatError, match="no labels"):
        s.require_labels()


def test_trailing_blank_lines_ignored(tmp_path):
    p = _write(tmp_path / "a.txt", [HEADER, *ROWS, "", ""])
    assert len(read_mrpc(p)) == 3


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("1\t1\t2\tonly four fields", "line 3: expected 5 tab-separated fields, got 4"),
        ("1\t1\t2\ta\tb\tc", "line 3: expected 5 tab-separated fields, got 6"),
        ("2\t1\t2\ta\tb", "line 3: Quality must be 0 or 1"),
        ("x\t1\t2\ta\tb", "line 3: Quality must be 0 or 1"),
        ("1\t\t2\ta\tb", "line 3: empty sentence id"),
        ("", "line 3: expected 5 tab-separated fields, got blank line"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, bad, match):
    p = _write(tmp_path / "msr_paraphrase_test.txt", [HEADER, ROWS[0], bad, ROWS[1]])
    with pytest.raises(MRPCFormatError, match=match) as e:
        read_mrpc(p)
    assert str(p) in str(e.value)


def test_bad_header_and_empty_file(tmp_path):
    with pytest.raises(MRPCFormatError, match="line 1: unexpected header"):
        read_mrpc(_write(tmp_path / "a.txt", ["label\ts1\ts2", "1\ta\tb"]))
    (tmp_path / "e.txt").write_bytes(b"\xef\xbb\xbf\r\n")
    with pytest.raises(MRPCFormatError, match="empty file"):
        read_mrpc(tmp_path / "e.txt")


@pytest.mark.parametrize("layout", ["original", "glue"])
def test_round_trip(tmp_path, layout):
    s = read_mrpc(_write(tmp_path / "in.txt", [HEADER, *ROWS]))
    p = write_mrpc(tmp_path / "out.txt", s, layout)
    raw = p.read_bytes()
    if layout == "original":
        assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") == 4
    else:
        assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    back = read_mrpc(p)
    assert back == s  # path is excluded from equality
    if layout == "original":  # the original layout reproduces the input byte for byte
        assert raw == (tmp_path / "in.txt").read_bytes()


def test_write_rejects_tabs():
    s = MRPCSplit([1], ["1"], ["2"], ["a\tb"], ["c"])
    with pytest.raises(ValueError, match="tabs"):
        write_mrpc("/nonexistent/x.txt", s)


def test_subset_and_fraction():
    s = MRPCSplit([1, 0, 1, 1], list("abcd"), list("efgh"), list("ijkl"), list("mnop"))
    assert s.positive_fraction == 0.75
    sub = s.subset([3, 1])
    assert sub.labels == [1, 0] and sub.s1 == ["l", "j"]
    with pytest.raises(ValueError, match="differ in length"):
        MRPCSplit([1], ["a", "b"], ["c"], ["d"], ["e"])


def test_find_prefers_glue_when_original_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("IWLAB_DATA", str(tmp_path))
    make_fixture(tmp_path / "mrpc" / "MRPC", 10, 6)
    train, test = find_mrpc(download=False)
    assert (train.name, test.name) == GLUE_FILES and train.parent.name == "MRPC"
    tr, te = load_mrpc(download=False)
    assert (len(tr), len(te)) == (10, 6) and set(tr.labels) <= {0, 1}


def test_original_files_are_checksummed(tmp_path):
    # fixture files under the original names fail the md5 check instead of being used silently
    make_fixture(tmp_path / "mrpc", 4, 4, layout="original")
    from iwlab.data.download import ChecksumError

    with pytest.raises(ChecksumError, match="msr_paraphrase_train.txt"):
        find_mrpc(tmp_path, download=False)


def test_missing_data_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="msr_paraphrase_train.txt and msr_paraphrase_test.txt"):
        find_mrpc(tmp_path, download=False)


def test_fixture_original_layout_has_bom_crlf(tmp_path):
    make_fixture(tmp_path, 5, 3, layout="original")
    raw = (tmp_path / ORIGINAL_FILES[0]).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfQuality\t") and raw.count(b"\r\n") == 6
    assert len(read_mrpc(tmp_path / ORIGINAL_FILES[1])) == 3


def test_registered_checksums_are_md5_hex():
    names = [r.filename for r in RESOURCES["mrpc"]]
    assert names == list(ORIGINAL_FILES)
    assert all(len(r.md5) == 32 and int(r.md5, 16) >= 0 for r in RESOURCES["mrpc"])


# -- item 15: non-UTF-8, gzipped, UTF-16, CR-only files; empty sentences; label values -------------


def test_non_utf8_file_names_file_and_line(tmp_path):
    p = tmp_path / "msr_paraphrase_train.txt"
    body = "\r\n".join([HEADER, ROWS[0], "1\t5\t6\tCaf\u00e9 au lait.\tCoffee."]) + "\r\n"
    p.write_bytes(body.encode("latin-1"))  # old: a bare UnicodeDecodeError
    with pytest.raises(MRPCFormatError) as e:
        read_mrpc(p)
    msg = str(e.value)
    assert "\n" not in msg and f"{p}, line 3: not UTF-8 text (byte b'\\xe9'" in msg and "re-save" in msg


def test_gzipped_file_is_named_and_explained(tmp_path):
    import gzip

    p = tmp_path / "train.tsv"
    p.write_bytes(gzip.compress(("\n".join([HEADER, *ROWS]) + "\n").encode()))
    with pytest.raises(MRPCFormatError) as e:
        read_mrpc(p)
    assert "\n" not in str(e.value) and f"{p} is gzip-compressed; decompress it first" in str(e.value)


def test_utf16_file_is_named_and_explained(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_bytes(("\n".join([HEADER, *ROWS]) + "\n").encode("utf-16"))
    with pytest.raises(MRPCFormatError, match="is UTF-16 text; re-save it as UTF-8") as e:
        read_mrpc(p)
    assert str(p) in str(e.value)


def test_cr_only_line_ends_are_explained_on_one_line(tmp_path):
    p = _write(tmp_path / "train.tsv", [HEADER, *ROWS], bom=False, eol="\r")
    with pytest.raises(MRPCFormatError) as e:  # old: a multi-line "unexpected header" message
        read_mrpc(p)
    assert "\n" not in str(e.value) and "\r" not in str(e.value) and "CR-only line ends" in str(e.value)


def test_header_with_control_characters_stays_on_one_line(tmp_path):
    p = _write(tmp_path / "a.txt", ["Quality\r\x0b#1 ID", ROWS[0]], bom=False, eol="\n")
    with pytest.raises(MRPCFormatError, match="line 1: unexpected header") as e:
        read_mrpc(p)
    assert "\n" not in str(e.value) and "\r" not in str(e.value) and "\x0b" not in str(e.value)


@pytest.mark.parametrize("row", ["1\t1\t2\t\tb", "0\t1\t2\ta\t  "], ids=["empty_s1", "blank_s2"])
def test_empty_sentence_is_refused(tmp_path, row):
    p = _write(tmp_path / "msr_paraphrase_test.txt", [HEADER, ROWS[0], row])
    with pytest.raises(MRPCFormatError) as e:  # old: accepted as a pair with an empty sentence
        read_mrpc(p)
    assert f"{p}, line 3: empty sentence" in str(e.value)


@pytest.mark.parametrize("label", [2, True, 1.0, "1", -1], ids=["two", "bool", "float", "str", "negative"])
def test_split_labels_must_be_int_0_or_1(tmp_path, label):
    # old: accepted; positive_fraction was wrong and write_mrpc wrote "True" / "1.0", which read_mrpc refuses
    with pytest.raises(ValueError, match=r"MRPCSplit labels must be the ints 0 or 1, got .* at index 1"):
        MRPCSplit([1, label], ["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"])


def test_numpy_int_labels_round_trip(tmp_path):
    import numpy as np

    s = MRPCSplit([np.int64(1), np.int64(0)], ["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"])
    back = read_mrpc(write_mrpc(tmp_path / "x.txt", s))
    assert back.labels == [1, 0] and back.s1 == ["e", "f"] and s.positive_fraction == 0.5
