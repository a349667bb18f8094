"""Predict-then-reveal questions: the answers the package computes."""

from __future__ import annotations

import pytest
import torch

from attention import TOKENS, CausalAttention, toy_inputs
from attention.quiz import attend_question, attend_weights, shape_question, stride_question
from attention.widgets import inline_script

SPLIT = [("view", (2, 6, 4, 5)), ("transpose", 1, 2)]


def test_weight_free_journey_attends_most_to_itself():
    x = toy_inputs()
    widget = attend_question(x, x, 1, tokens=TOKENS, prompt="Which key?")
    weights = torch.softmax(x @ x[1], dim=-1)
    assert widget.data["answer"] == int(weights.argmax())
    assert TOKENS[widget.data["answer"]] == "journey"  # itself, just ahead of "starts"
    torch.testing.assert_close(
        torch.tensor(widget.data["weights"], dtype=torch.float64),
        weights.double(),
        atol=1e-4,
        rtol=0,
    )


def test_causal_question_matches_the_layer():
    torch.manual_seed(789)
    x = toy_inputs()
    layer = CausalAttention(3, 2, context_length=6, dropout=0.0).eval()
    with torch.no_grad():
        q, k = layer.W_query(x), layer.W_key(x)
        _, weights = layer(x[None], return_weights=True)
    for row in range(6):
        mine = attend_weights(q, k, row, scale=True, causal=True)
        torch.testing.assert_close(mine, weights[0, row], atol=1e-6, rtol=1e-5)
        assert mine[row + 1 :].sum() == 0  # exact: blocked keys get exp(-inf) = 0


def test_shape_and_stride_questions_match_torch():
    y = torch.empty(2, 6, 20).view(2, 6, 4, 5).transpose(1, 2)
    assert shape_question((2, 6, 20), SPLIT, prompt="Shape?").data["answer"] == list(y.shape)
    strides = [stride_question((2, 6, 20), SPLIT, dim, prompt="Stride?") for dim in range(4)]
    assert [w.data["answer"] for w in strides] == list(y.stride())
    assert inline_script("attention-quiz") in strides[0].to_html()


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: shape_question((2, 6, 20), [("view", (2, 6, 7))], prompt="s"),
         r"^operations: view\(2, 6, 7\) fails here"),
        (lambda: shape_question((2, 6, 20), [("transpose", 1, 3)], prompt="s"),
         r"^operations: transpose dims must be ints in \[0, 3\), got"),
        (lambda: shape_question((2, 6, 20), [("permute", 1)], prompt="s"),
         r"^operations must hold \('view', sizes\)"),
        (lambda: shape_question((2, 0), SPLIT, prompt="s"),
         r"^shape must be a positive int, got 0"),
        (lambda: shape_question((2, 6, 20), SPLIT, prompt=" "),
         r"^prompt must be a non-empty string"),
        (lambda: stride_question((2, 6, 20), SPLIT, 4, prompt="s"),
         r"^dim must be an int in \[0, 4\), got 4"),
        (lambda: attend_question(toy_inputs(), toy_inputs(), 6, tokens=TOKENS, prompt="q"),
         r"^query must be an int in \[0, 6\), got 6"),
        (lambda: attend_question(toy_inputs(), toy_inputs()[:5], 1, tokens=TOKENS, prompt="q"),
         r"^keys must have the shape of queries \(6, 3\), got \(5, 3\)"),
        (lambda: attend_question(toy_inputs(), toy_inputs(), 1, tokens=TOKENS[:5], prompt="q"),
         r"^tokens must be a sequence of 6 labels"),
    ],
)  # fmt: skip
def test_bad_input_names_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_a_near_tie_is_refused():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"two keys within 1e-3"):
        attend_question(x, x, 0, tokens=["a", "b", "c"], prompt="q")
