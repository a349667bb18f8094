"""attention.model_lab: chapter 12's model exported for the page, and its references."""

from __future__ import annotations

import base64
import copy
import json
import math
import struct
from typing import Any

import pytest
import torch

from attention.induction import (
    AttentionOnlyTransformer,
    InductionConfig,
    attention_patterns,
    repeated_tokens,
)
from attention.induction_scores import induction_score, previous_token_score, train_induction
from attention.model_lab import (
    ALPHABET,
    DEFAULT_CASES,
    FORMAT,
    REFERENCE_DECIMALS,
    TOLERANCE,
    encode,
    export_weights,
    import_weights,
    lab_reference,
    model_lab,
    ov_circuit,
    period,
)
from attention.multihead import MultiHeadAttention

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0, **sizes: int) -> AttentionOnlyTransformer:
    torch.manual_seed(seed)
    return AttentionOnlyTransformer(InductionConfig(**sizes)).eval()


@pytest.fixture(scope="module")
def trained() -> AttentionOnlyTransformer:
    """A small model trained until it has an induction head (as in test_induction_scores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = train_induction(InductionConfig(context_length=16), steps=800, batch_size=32)
    finally:
        torch.set_num_threads(threads)
    assert run.induction[1].max() > 0.6
    return run.model


# -- export and import ----------------------------------------------------------


def test_the_round_trip_gives_back_the_same_numbers():
    model = _model(1)
    again = import_weights(json.loads(json.dumps(export_weights(model))))
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        assert torch.equal(theirs[name], value), name  # exact: float32 bytes copied back
    x = repeated_tokens(3, 8, vocab_size=64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0.0, rtol=0.0)


def test_the_export_is_little_endian_float32_in_base64():
    model = _model(2)
    tensors = export_weights(model)["tensors"]
    raw = base64.b64decode(tensors["pos_emb"]["data"])
    first, last = struct.unpack("<f", raw[:4])[0], struct.unpack("<f", raw[-4:])[0]
    assert first == model.pos_emb.weight[0, 0].item()  # exact: the float32 itself
    assert last == model.pos_emb.weight[-1, -1].item()  # exact: the float32 itself
    assert tensors["out_head"]["shape"] == [64, 32]
    assert tensors["layers.1.out_proj.bias"]["shape"] == [32]


def test_the_export_is_compact():
    model = _model(3)
    text = json.dumps(export_weights(model), separators=(",", ":"))
    n_params = sum(p.numel() for p in model.parameters())
    # base64 spends 4 characters on 3 bytes: 16/3 characters a parameter, plus names.
    assert n_params * 16 / 3 < len(text) < n_params * 16 / 3 + 2_000
    assert len(text) < 100_000  # chapter 12's model: well under a few hundred KB


def test_the_config_travels_with_the_weights():
    model = _model(4, vocab_size=10, context_length=6, emb_dim=8, n_heads=4, n_layers=3)
    again = import_weights(export_weights(model))
    assert again.config == model.config


def test_bad_exports_name_what_is_wrong():
    data = export_weights(_model(5, vocab_size=8, context_length=6))
    with pytest.raises(TypeError, match="model must be an AttentionOnlyTransformer"):
        export_weights("model")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be a mapping"):
        import_weights([])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data\['format'\] must be"):
        import_weights({**data, "format": "float16"})
    with pytest.raises(ValueError, match=r"data\['config'\] must have the keys"):
        import_weights({**data, "config": {"vocab_size": 8}})
    missing = copy.deepcopy(data)
    del missing["tensors"]["out_head"]
    with pytest.raises(ValueError, match=r"data\['tensors'\] must have the keys"):
        import_weights(missing)
    wrong = copy.deepcopy(data)
    wrong["tensors"]["tok_emb"] = wrong["tensors"]["pos_emb"]
    with pytest.raises(
        ValueError, match=r"data\['tensors'\]\['tok_emb'\] must hold shape \[8, 32\]"
    ):
        import_weights(wrong)
    biased = _model(5, vocab_size=8, context_length=6)
    biased.layers[0] = MultiHeadAttention(32, 32, 6, 0.0, 2, qkv_bias=True)
    with pytest.raises(ValueError, match=r"model.layers\[0\].W_query has a bias"):
        export_weights(biased)


# -- input -------------------------------------------------------------------------


def test_encode_reads_one_token_a_character_and_skips_spaces():
    assert len(ALPHABET) == len(set(ALPHABET)) == 64
    assert encode("a b\tZ!?") == [0, 1, 51, 62, 63]
    assert encode("") == []
    with pytest.raises(ValueError, match=r"text has '~' at character 3, which is not a token"):
        encode("ab~")
    with pytest.raises(ValueError, match="'e' at character 1"):
        encode("e", vocab_size=4)
    with pytest.raises(TypeError, match="text must be a str"):
        encode(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [2, 3, 5, 8])
def test_period_finds_the_repeat_of_a_random_string(length):
    gen = torch.Generator().manual_seed(length)
    for row in repeated_tokens(20, length, vocab_size=64, generator=gen, tokens=3 * length):
        found = period(row.tolist())
        assert found is not None
        assert length % found == 0
    assert period([1, 2, 3, 4]) is None
    assert period([7]) is None
    assert period([5, 5, 5]) == 2  # L >= 2: the induction score needs t - L + 1 < t


# -- the references the page is held to ---------------------------------------

DECIMALS = 1e-6  # the JSON keeps six decimals


def _with_inf(value: Any) -> Any:
    """Nested lists with None (masked) read as -inf."""
    if isinstance(value, list):
        return [_with_inf(v) for v in value]
    return -math.inf if value is None else value


def test_lab_reference_agrees_with_the_model_and_the_scores(trained):
    tokens = repeated_tokens(1, 6, vocab_size=64, generator=torch.Generator().manual_seed(9))[0]
    ref = lab_reference(trained, tokens.tolist())
    t = len(tokens)
    weights = torch.tensor(ref["weights"], dtype=torch.float64)
    torch.testing.assert_close(
        weights, attention_patterns(trained, tokens).double(), atol=DECIMALS, rtol=0.0
    )
    with torch.no_grad():
        logits = trained(tokens[None])[0]
    torch.testing.assert_close(
        torch.tensor(ref["logits"], dtype=torch.float64), logits.double(), atol=DECIMALS, rtol=0.0
    )
    scores = torch.tensor(_with_inf(ref["scores"]), dtype=torch.float64)
    blocked = torch.ones(t, t, dtype=torch.bool).triu(diagonal=1)
    assert torch.isinf(scores[..., blocked]).all()  # masked above the diagonal
    assert torch.isfinite(scores[..., ~blocked]).all()
    torch.testing.assert_close(scores.softmax(dim=-1), weights, atol=1e-5, rtol=0.0)
    assert ref["period"] == 6
    prev = torch.tensor(ref["previous"], dtype=torch.float64)
    ind = torch.tensor(ref["induction"], dtype=torch.float64)
    torch.testing.assert_close(prev, previous_token_score(weights), atol=DECIMALS, rtol=0.0)
    torch.testing.assert_close(ind, induction_score(weights, 6), atol=DECIMALS, rtol=0.0)
    assert ind[1].max() > 0.6 > 0.3 > ind[0].max()  # the stripes the page shows


def test_lab_reference_without_a_repeat_has_no_induction_score(trained):
    ref = lab_reference(trained, [0, 1, 2, 3])
    assert ref["period"] is None
    assert ref["induction"] is None
    one = lab_reference(trained, [5])
    assert one["previous"] is None
    assert one["weights"] == [[[[1.0]]] * 2] * 2  # exact: the softmax of one score is 1


def test_lab_reference_rejects_what_the_model_cannot_read(trained):
    with pytest.raises(ValueError, match="more than context_length=16"):
        lab_reference(trained, [0] * 17)
    with pytest.raises(ValueError, match="tokens must hold ids 0 to 63"):
        lab_reference(trained, [64])
    with pytest.raises(ValueError, match="decimals must be"):
        lab_reference(trained, [1, 2], decimals=-1)
    with pytest.raises(TypeError, match="tokens must be a sequence of int token ids"):
        lab_reference(trained, ["a"])  # type: ignore[list-item]


# -- the OV circuit --------------------------------------------------------------


@pytest.mark.parametrize(("layer", "head"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_ov_circuit_is_what_the_head_adds_when_it_attends_to_one_token(layer, head):
    model = _model(6, vocab_size=12, context_length=6, emb_dim=8, n_heads=2)
    block = model.layers[layer]
    assert isinstance(block, MultiHeadAttention)
    # One token alone: every head puts all its weight on it. Keep only this
    # head's columns of out_proj, and leave out the bias.
    alone = copy.deepcopy(block)
    with torch.no_grad():
        keep = torch.zeros(8, dtype=torch.bool)
        keep[head * 4 : (head + 1) * 4] = True
        alone.out_proj.weight[:, ~keep] = 0.0
        alone.out_proj.bias.zero_()
        moved = alone(model.tok_emb.weight[:, None, :])[:, 0]  # (V, 1, C) -> (V, C)
        expected = model.out_head(moved)  # (V, V)
    torch.testing.assert_close(ov_circuit(model, layer, head), expected, atol=1e-5, rtol=1e-5)


def test_the_induction_head_copies(trained):
    head = int(torch.tensor([ov_circuit(trained, 1, h).diagonal().mean() for h in (0, 1)]).argmax())
    top = ov_circuit(trained, 1, head).argmax(dim=-1)
    assert (top == torch.arange(64)).float().mean() > 0.9  # mostly its own token


def test_ov_circuit_names_a_bad_layer_or_head():
    model = _model(7, vocab_size=8, context_length=6)
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\), got 2"):
        ov_circuit(model, 2, 0)
    with pytest.raises(ValueError, match=r"head must be in \[0, 2\), got 5"):
        ov_circuit(model, 0, 5)


# -- the widget --------------------------------------------------------------------


def test_the_widget_embeds_the_model_and_the_package_references(trained):
    cases = ("abcdabcd", "xyz")
    widget = model_lab(trained, cases=cases)
    assert widget.kind == "model-lab"
    data = widget.data
    assert data["tolerance"] == TOLERANCE
    assert data["symbols"] == ALPHABET
    assert [c["text"] for c in data["cases"]] == list(cases)
    expected = lab_reference(trained, [0, 1, 2, 3] * 2, decimals=REFERENCE_DECIMALS)
    del expected["scores"]  # the page's own are checked against the package in the browser tests
    assert data["cases"][0] == {"text": "abcdabcd", **expected}
    assert data["model"] == export_weights(trained)
    assert data["model"]["format"] == FORMAT
    copying = data["copying"]
    assert max(copying[1]) > 0.9
    assert len(copying) == 2
    html = widget.to_html(portable=False)
    assert len(html.encode()) < 130_000  # the model and its references, a light page


def test_the_default_cases_fit_chapter_12s_model():
    config = InductionConfig()
    for text in DEFAULT_CASES:
        assert len(encode(text, vocab_size=config.vocab_size)) <= config.context_length
    assert period(encode(DEFAULT_CASES[0])) is not None  # the page opens on a repeat


def test_the_widget_names_bad_arguments():
    model = _model(8, vocab_size=8, context_length=6)
    with pytest.raises(ValueError, match="symbols must be a str of at least 8 distinct"):
        model_lab(model, symbols="aab")
    with pytest.raises(ValueError, match="cases must be a non-empty sequence of str"):
        model_lab(model, cases="ab")
    with pytest.raises(ValueError, match="'z' at character 1"):
        model_lab(model, cases=("z",))
