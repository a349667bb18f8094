"""Chapter 4's hand-set heads: each relation holds, the bilinear form is the score."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attention import TOKENS, SelfAttentionV1
from attention.projections import (
    Head,
    bilinear_form,
    bilinear_scores,
    head_weights,
    other_token_head,
    previous_token_head,
    rank_one_head,
    with_positions,
)
from tests.conftest import generator

# float32 products of values near 1, summed over at most 9 features.
ATOL = 1e-5

WITH, JOURNEY = TOKENS.index("with"), TOKENS.index("journey")
# A key direction along which "journey" sticks out beyond the other five tokens.
TOWARDS_JOURNEY = torch.tensor([-0.2, 0.7, 0.7])


def _usual_scores(x: torch.Tensor, head: Head) -> torch.Tensor:
    return (x @ head.W_query) @ (x @ head.W_key).T


def _on(device: torch.device, head: Head) -> Head:
    """The head's matrices on ``device`` (the constructors build them on the CPU)."""
    return Head(head.W_query.to(device), head.W_key.to(device))


def test_previous_token_head_attends_one_back(inputs, device):
    x = with_positions(inputs.to(device))  # (6, 9)
    weights = head_weights(x, _on(device, previous_token_head(3, 6)))
    assert weights[1:].argmax(dim=-1).tolist() == [0, 1, 2, 3, 4]
    # Position 0 has no previous token: its query is zero, its row uniform.
    uniform = torch.full((6,), 1 / 6, device=device)
    torch.testing.assert_close(weights[0], uniform, atol=1e-6, rtol=0)


def test_previous_token_head_follows_positions_not_words(inputs, device):
    # "one step one step": the two "one"s have the same content, yet each
    # "step" must pick the "one" just before it.
    repeated = inputs.to(device)[[4, 5, 4, 5]]
    weights = head_weights(with_positions(repeated), _on(device, previous_token_head(3, 4)))
    assert weights[1:].argmax(dim=-1).tolist() == [0, 1, 2]


def test_a_content_only_head_cannot_tell_twins_apart(inputs):
    repeated = inputs[[4, 5, 4, 5]]  # positions 0 and 2 hold the same token
    torch.manual_seed(0)
    form = bilinear_form(torch.randn(3, 2), torch.randn(3, 2))
    scores = bilinear_scores(repeated, form.matrix)
    torch.testing.assert_close(scores[:, 0], scores[:, 2], atol=1e-6, rtol=0)


def test_other_token_head_finds_the_largest_other_dot_product(inputs, device):
    x = inputs.to(device)  # (6, 3)
    weights = head_weights(with_positions(x), _on(device, other_token_head(3, 6)))
    raw = x @ x.T  # (6, 6)
    diagonal = torch.eye(6, dtype=torch.bool, device=device)
    expected = raw.masked_fill(diagonal, float("-inf")).argmax(dim=-1)
    assert weights.argmax(dim=-1).tolist() == expected.tolist()
    assert (weights.argmax(dim=-1) != torch.arange(6, device=device)).all()
    # What the chapter says: the length bias sends most rows to "journey".
    found = [TOKENS[i] for i in expected]
    assert found == ["journey", "starts", "journey", "journey", "starts", "journey"]


@given(st.floats(min_value=0.1, max_value=50.0))
def test_sharpness_never_changes_the_winner(sharpness):
    x = with_positions(torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.22, 0.58, 0.33]]))
    plain = head_weights(x, other_token_head(3, 3)).argmax(dim=-1)
    sharp = head_weights(x, other_token_head(3, 3, sharpness=sharpness)).argmax(dim=-1)
    assert plain.tolist() == sharp.tolist()


def test_rank_one_head_sends_with_to_journey(inputs, device):
    x, towards = inputs.to(device), TOWARDS_JOURNEY.to(device)
    ones = torch.ones(3, device=device)
    weights = head_weights(x, rank_one_head(ones, towards, strength=20.0))
    assert weights[WITH].argmax() == JOURNEY
    # Rank one: every positive query shares the one key ranking.
    assert (weights.argmax(dim=-1) == JOURNEY).all()
    # A negative query reads the ranking from the bottom.
    flipped = head_weights(x, rank_one_head(-ones, towards))
    assert (flipped.argmax(dim=-1) == (x @ towards).argmin()).all()


def _heads(inputs, device=None):
    """(tokens, head, rank of its bilinear form) for four heads, on ``device``."""
    positions = with_positions(inputs)
    torch.manual_seed(123)
    sa = SelfAttentionV1(3, 2)
    heads = [
        (positions, previous_token_head(3, 6), 5),
        (positions, other_token_head(3, 6), 9),
        (inputs, rank_one_head(torch.ones(3), TOWARDS_JOURNEY), 1),
        (inputs, Head(sa.W_query.detach(), sa.W_key.detach()), 2),
    ]
    return [(x.to(device), _on(device, head), rank) for x, head, rank in heads]


def test_bilinear_form_equals_the_usual_scores(inputs, device):
    for x, head, _ in _heads(inputs, device):
        form = bilinear_form(*head)
        assert form.matrix.shape == (x.shape[1], x.shape[1])
        torch.testing.assert_close(
            bilinear_scores(x, form.matrix), _usual_scores(x, head), atol=ATOL, rtol=0
        )


def test_rank_is_at_most_d_out(inputs):
    for _, head, rank in _heads(inputs):
        form = bilinear_form(*head)
        assert form.rank == rank
        assert form.rank <= head.W_query.shape[1]


@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=0, max_value=2**16),
)
def test_rank_bound_for_random_heads(device, d_in, d_out, seed):
    g = generator(device, seed)
    wq = torch.randn(d_in, d_out, generator=g, device=device)
    wk = torch.randn(d_in, d_out, generator=g, device=device)
    form = bilinear_form(wq, wk)
    assert form.rank <= min(d_in, d_out)
    x = torch.randn(5, d_in, generator=g, device=device)
    torch.testing.assert_close(
        bilinear_scores(x, form.matrix), _usual_scores(x, Head(wq, wk)), atol=1e-4, rtol=1e-5
    )


def test_head_weights_match_self_attention_v1(inputs, device):
    torch.manual_seed(123)
    sa = SelfAttentionV1(3, 2).to(device)
    x = inputs.to(device)
    _, expected = sa(x, return_weights=True)
    actual = head_weights(x, Head(sa.W_query.detach(), sa.W_key.detach()))
    torch.testing.assert_close(actual, expected.detach(), atol=1e-6, rtol=0)


def test_sqrt_dk_is_a_temperature(inputs):
    # Dividing A by sqrt(d_k) rescales every score and reorders none.
    torch.manual_seed(123)
    sa = SelfAttentionV1(3, 2)
    form = bilinear_form(sa.W_query.detach(), sa.W_key.detach())
    raw = bilinear_scores(inputs, form.matrix)
    scaled = bilinear_scores(inputs, form.matrix / 2**0.5)
    assert raw.argsort(dim=-1).tolist() == scaled.argsort(dim=-1).tolist()


def test_scores_are_linear_in_the_key(inputs, device):
    # No form undoes length: doubling a token doubles its column of scores.
    g = generator(device)
    form = bilinear_form(*torch.randn(2, 3, 3, generator=g, device=device))
    x = inputs.to(device)
    doubled = x.clone()
    doubled[1] *= 2
    a = bilinear_scores(x, form.matrix)
    b = bilinear_scores(doubled, form.matrix)
    others = [0, 2, 3, 4, 5]
    torch.testing.assert_close(b[others, 1], 2 * a[others, 1], atol=ATOL, rtol=0)


def test_with_positions_appends_one_hot_rows(inputs, device):
    x = with_positions(inputs.to(device))
    assert x.shape == (6, 9)
    # exact: concatenation copies the numbers, and the eye is made of 0s and 1s.
    torch.testing.assert_close(x[:, :3], inputs.to(device), atol=0, rtol=0)
    torch.testing.assert_close(x[:, 3:], torch.eye(6, device=device), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: bilinear_form(torch.ones(3, 2), torch.ones(3, 3)), ValueError, "W_key"),
        (lambda: bilinear_form(torch.ones(3), torch.ones(3)), ValueError, "W_query"),
        (lambda: bilinear_form(torch.ones(3, 2), torch.ones(3, 2).double()), TypeError, "W_key"),
        (lambda: bilinear_form([[1.0]], torch.ones(1, 1)), TypeError, "W_query"),
        (lambda: bilinear_scores(torch.ones(6, 3), torch.ones(3, 2)), ValueError, "square"),
        (lambda: bilinear_scores(torch.ones(6, 4), torch.eye(3)), ValueError, "d_in=3"),
        (lambda: bilinear_scores(torch.ones(6, 3).long(), torch.eye(3)), TypeError, "x"),
        (lambda: head_weights(torch.ones(6, 4), Head(*torch.ones(2, 3, 2))), ValueError, "x"),
        (lambda: with_positions(torch.ones(2, 6, 3)), ValueError, "x"),
        (lambda: rank_one_head(torch.ones(3), torch.ones(2)), ValueError, "key_direction"),
        (lambda: rank_one_head(torch.ones(3), torch.ones(3), strength=0.0), ValueError, "strength"),
        (lambda: previous_token_head(0, 6), ValueError, "d_in"),
        (lambda: previous_token_head(3, 2.0), TypeError, "num_positions"),
        (lambda: other_token_head(3, 6, strength=-1.0), ValueError, "strength"),
        (lambda: other_token_head(3, 6, sharpness=float("inf")), ValueError, "sharpness"),
    ],
)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()
