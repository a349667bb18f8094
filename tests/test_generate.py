"""generate: greedy by default, sampling with temperature, top-k, top-p and an end id."""

from __future__ import annotations

import math

import pytest
import torch

from attention.gpt import GPTConfig, GPTModel, _filtered, generate, generate_text_simple
from tests.conftest import generator

TINY = GPTConfig(vocab_size=12, context_length=8, emb_dim=8, n_heads=2, n_layers=1)


@pytest.fixture(scope="module")
def model(device: torch.device) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(TINY).to(device).eval()


@pytest.fixture
def prompts(device: torch.device) -> torch.Tensor:
    return torch.tensor([[1, 2, 3], [4, 5, 6]], device=device)


def test_the_default_is_the_books_greedy_loop(model, prompts) -> None:
    for steps in (0, 3, 9):  # 9: past the context length, so the window slides
        expected = generate_text_simple(model, prompts, steps, 8)
        assert generate(model, prompts, steps).tolist() == expected.tolist()  # integer ids
        assert generate(model, prompts, steps, use_cache=False).tolist() == expected.tolist()


def test_sampling_is_reproducible_with_a_generator(model, prompts) -> None:
    def draw(seed: int) -> list[list[int]]:
        g = generator(prompts.device, seed)
        return generate(model, prompts, 6, temperature=5.0, generator=g).tolist()

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)  # at this temperature, two seeds draw differently


def test_a_one_token_filter_is_greedy(model, prompts) -> None:
    greedy = generate(model, prompts, 5).tolist()
    g = generator(prompts.device)
    assert generate(model, prompts, 5, temperature=2.0, top_k=1, generator=g).tolist() == greedy
    assert generate(model, prompts, 5, temperature=2.0, top_p=1e-6, generator=g).tolist() == greedy


def test_top_k_and_top_p_keep_what_they_say(device) -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]], device=device)
    logits = probs.log()
    assert _filtered(logits, 2, None).isfinite().tolist() == [[True, True, False, False]]
    # 0.5 + 0.3 reaches 0.8: the nucleus stops there; a little more needs the third token.
    assert _filtered(logits, None, 0.8).isfinite().tolist() == [[True, True, False, False]]
    assert _filtered(logits, None, 0.81).isfinite().tolist() == [[True, True, True, False]]
    assert _filtered(logits, None, 1.0).isfinite().all()
    shuffled = logits[:, [2, 0, 3, 1]]  # the order of the vocabulary does not matter
    assert _filtered(shuffled, None, 0.8).isfinite().tolist() == [[False, True, False, True]]
    kept = torch.softmax(_filtered(logits, None, 0.8), dim=-1)
    assert kept[0, :2].tolist() == pytest.approx([0.5 / 0.8, 0.3 / 0.8], rel=1e-6, abs=0)


def test_an_end_id_stops_every_sequence(model, prompts) -> None:
    first = generate(model, prompts, 1)[:, -1]  # (B,): what each prompt says next
    out = generate(model, prompts, 6, eos_id=int(first[0]))
    if first[0] == first[1]:
        assert out.shape == (2, 4)  # both stop at once
    else:
        assert out[0, 3:].eq(first[0]).all()  # the first sequence only repeats the end id
    alone = generate(model, prompts[:1], 6, eos_id=int(first[0]))
    assert alone.tolist() == [[*prompts[0].tolist(), int(first[0])]]  # stops right after it


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"temperature": -1.0}, ValueError, "temperature must be a finite number >= 0, got -1"),
        ({"temperature": math.inf}, ValueError, "temperature must be a finite number"),
        ({"temperature": "hot"}, TypeError, "temperature must be a number"),
        ({"temperature": 1.0, "top_p": 1.5}, ValueError, r"top_p must be in \(0, 1\], got 1.5"),
        ({"temperature": 1.0, "top_k": 0}, ValueError, "top_k must be a positive int"),
        ({"top_k": 5}, ValueError, "give a temperature > 0 too"),
        ({"eos_id": -1}, ValueError, "eos_id must be an int >= 0"),
        ({"use_cache": 1}, TypeError, "use_cache must be a bool"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator or None, got int"),
    ],
)
def test_bad_arguments_are_named(model, prompts, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        generate(model, prompts, 2, **kwargs)


def test_bad_model_and_ids_are_named(model, prompts) -> None:
    with pytest.raises(TypeError, match="model must be a GPTModel, got Linear"):
        generate(torch.nn.Linear(2, 2), prompts, 2)
    with pytest.raises(ValueError, match=r"^idx must hold ids in \[0, vocab_size=12\)"):
        generate(model, torch.tensor([[1, 40]], device=prompts.device), 2)
