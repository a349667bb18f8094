"""The book's diagrams: valid, described, small, theme-safe, and drawn from the package."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest
import torch

from attention import diagrams
from attention.diagrams import (
    LATENT_EXAMPLE,
    MAX_TINT,
    delta_rule_update,
    delta_step,
    head_split,
    head_split_tensors,
    latent_attention_flow,
    latent_widths,
    mask_tensors,
    mask_then_softmax,
    qkv_flow,
    qkv_tensors,
    tiling_walk,
)
from attention.flash import flash_attention
from attention.gpt import GPTConfig
from attention.latent import (
    LatentCache,
    LatentConfig,
    MultiHeadLatentAttention,
    cache_numbers_per_token,
)
from attention.linear_attention import delta_rule_chunked
from attention.self_attention import SelfAttentionV1
from attention.shapes import PALETTE
from attention.toy import TOKENS, toy_inputs
from tests.conftest import random_tensor

SVG = "{http://www.w3.org/2000/svg}"
BUILT = {name: draw() for name, draw in diagrams.ALL.items()}


@pytest.mark.parametrize("name", list(BUILT))
def test_each_diagram_is_svg_with_a_title_and_a_real_description(name):
    d = BUILT[name]
    root = ET.fromstring(d.svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert all(root.get(a) for a in ("width", "height", "viewBox"))
    assert root.find(f"{SVG}title").text == d.title
    desc = root.find(f"{SVG}desc").text
    assert desc == d.description
    assert len(desc.split()) >= 40, desc  # a description, not a label
    assert "diagram" not in d.title.lower()
    assert d.name == name


@pytest.mark.parametrize("name", list(BUILT))
def test_each_diagram_is_under_60_kb(name):
    assert len(BUILT[name].to_html().encode("utf-8")) < 60_000


def colour_problems(svg: str) -> list[str]:
    """Colours that would not follow the page's theme: every one must be the
    text colour, none, or a palette tint at most MAX_TINT opaque; text is
    always in the text colour; no style element or inline style but the root's."""
    root = ET.fromstring(svg)
    allowed = {"currentColor", "none", *PALETTE}
    problems = []
    for el in root.iter():
        tag = el.tag.removeprefix(SVG)
        for attr in ("fill", "stroke", "color", "stop-color"):
            value = el.get(attr)
            if value is not None and value not in allowed:
                problems.append(f"{tag} {attr}={value}")
        if el.get("fill") in PALETTE and float(el.get("fill-opacity", "1")) > MAX_TINT:
            problems.append(f"{tag} opaque tint {el.attrib}")
        if tag == "text" and el.get("fill") != "currentColor":
            problems.append(f"text fill={el.get('fill')}")
        if tag == "style" or ("style" in el.attrib and el is not root):
            problems.append(f"{tag} style")
    return problems


@pytest.mark.parametrize("name", list(BUILT))
def test_colours_follow_the_page_or_are_faint_tints(name):
    svg = BUILT[name].svg
    assert colour_problems(svg) == []
    tints = [el for el in ET.fromstring(svg).iter() if el.get("fill") in PALETTE]
    assert tints  # the check looked at what the diagrams really draw


def test_colour_check_catches_absolute_colours_and_opaque_tints():
    svg = BUILT["qkv-flow"].svg
    assert colour_problems(svg.replace('fill="currentColor"', 'fill="#000000"', 1))
    assert colour_problems(svg.replace('fill-opacity="0.35"', 'fill-opacity="1"', 1))
    assert colour_problems(svg.replace("<title>", "<style>text{}</style><title>", 1))


def _texts(svg: str) -> list[str]:
    return [el.text or "" for el in ET.fromstring(svg).iter(f"{SVG}text")]


def test_qkv_shapes_are_the_layers_own():
    t = qkv_tensors()
    x = toy_inputs()
    torch.manual_seed(123)
    layer = SelfAttentionV1(d_in=3, d_out=2)
    torch.testing.assert_close(t.context, layer(x).detach(), atol=1e-6, rtol=0)
    texts = _texts(qkv_flow().svg)
    assert str(tuple(x.shape)) in texts  # (6, 3)
    assert str(tuple(layer(x).shape)) in texts  # (6, 2)
    assert f"({len(TOKENS)}, {len(TOKENS)})" in texts
    assert "(3, 4)" in " ".join(_texts(qkv_flow(d_out=4).svg))  # follows d_out


def test_mask_diagram_shows_the_packages_weights():
    t = mask_tensors()
    texts = _texts(mask_then_softmax().svg)
    shown = [s for s in texts if re.fullmatch(r"−?\d\.\d\d|−∞", s)]
    n = len(TOKENS)
    assert len(shown) == 2 * n * n
    masked, weights = shown[: n * n], shown[n * n :]
    assert masked.count("−∞") == n * (n - 1) // 2
    expected = [f"{v:.2f}".replace("-", "−") for v in t.weights.flatten().tolist()]
    assert weights == expected
    assert [s for s in texts if s.startswith("= ")] == ["= 1.00"] * n
    # The causal weights are the renormalised plain softmax.
    renorm = t.unmasked.tril() / t.unmasked.tril().sum(dim=-1, keepdim=True)
    torch.testing.assert_close(t.weights, renorm, atol=1e-6, rtol=0)


def test_head_split_shows_real_shapes_and_strides():
    s = head_split_tensors()
    assert s.view_fails
    assert not s.swapped.is_contiguous()
    assert s.packed.is_contiguous()
    assert s.heads.data_ptr() == s.x.data_ptr()  # exact: transpose is a view
    texts = _texts(head_split().svg)
    for tensor in (s.x, s.split, s.heads, s.context, s.swapped, s.packed, s.merged):
        assert f"strides {tuple(tensor.stride())}" in texts
        assert "(" + ", ".join(map(str, tensor.shape)) + ")" in texts
    assert torch.equal(s.merged, s.x)  # exact: the merge undoes the split (copies only)
    assert "view(B, T, C) fails" in head_split().description


def test_head_split_follows_its_sizes():
    s = head_split_tensors(tokens=2, num_heads=3, head_dim=2)
    assert tuple(s.heads.shape) == (1, 3, 2, 2)
    assert f"strides {tuple(s.swapped.stride())}" in _texts(head_split(tokens=2, num_heads=3).svg)


def test_prenorm_block_reads_its_sizes_from_the_config():
    small = diagrams.prenorm_block(GPTConfig(emb_dim=64, n_heads=4, n_layers=1, vocab_size=10))
    assert "(B, T, 64)" in small.description
    assert "64 → 256 → 64" in small.description
    assert "4 heads" in small.description
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        diagrams.prenorm_block({"emb_dim": 64})


def test_tiling_walk_matches_the_flash_kernel():
    w = tiling_walk()
    assert [s.keys for s in w.steps] == [(0, 4), (4, 8), (8, 12)]
    last = w.steps[-1]
    assert math.isclose(last.running_max + math.log(last.running_sum), w.logsumexp, abs_tol=1e-5)
    assert all(b.running_max >= a.running_max for a, b in zip(w.steps, w.steps[1:], strict=False))
    # The same queries and keys through the package's kernel: one row's output
    # from the walk's statistics equals flash_attention's.
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    v = torch.eye(12)
    out = flash_attention(q[None, None], k[None, None], v[None, None], causal=True, block_size=4)
    scores = q[w.row] @ k.T / 2.0  # (T,), D = 4
    walked = torch.exp(scores - last.running_max) / last.running_sum
    torch.testing.assert_close(out[0, 0, w.row], walked, atol=1e-6, rtol=0)


def test_flash_tiling_skips_tiles_after_the_diagonal():
    d = diagrams.flash_tiling(tokens=16, block=4)
    assert "visits 4 key tiles" in d.description
    assert "skipped, 0 in this block row" in d.description
    assert len(tiling_walk(tokens=10, block=4).steps) == 3


def test_encoder_decoder_names_the_models_state_width():
    d = diagrams.encoder_decoder()
    assert "64 numbers" in d.description
    assert "in 64 numbers" in _texts(d.svg)
    with pytest.raises(ValueError, match="tokens must be"):
        diagrams.encoder_decoder(tokens=9)


def test_html_wraps_the_svg_in_a_figure_the_site_styles():
    html = BUILT["head-split"].to_html()
    assert html.startswith('<figure class="attn-diagram"')
    assert html.endswith("</svg></figure>")
    assert BUILT["head-split"]._repr_html_() == html


DEEPSEEK_V2 = LatentConfig(
    d_model=5120, n_heads=128, head_dim=128, rope_dim=64, kv_latent_dim=512, q_latent_dim=1536
)


def test_latent_flow_prints_the_widths_of_a_real_layer_and_its_cache(device):
    cfg = LATENT_EXAMPLE
    torch.manual_seed(0)
    layer = MultiHeadLatentAttention(cfg).to(device)
    cache, tokens = LatentCache(), 3
    with torch.no_grad():
        layer(random_tensor(0, 1, tokens, cfg.d_model, device=device), cache=cache)
    per_token = cache.nbytes // (tokens * layer.W_dkv.weight.element_size())
    w = latent_widths()
    assert (w.cached, w.mha_cached) == cache_numbers_per_token(cfg) == (per_token, 128)
    assert layer.W_dkv.weight.shape == (w.kv_latent, w.model) == (16, 64)
    assert layer.W_kr.weight.shape == (w.rope, w.model) == (4, 64)
    assert layer.W_dq is not None
    assert layer.W_dq.weight.shape == (w.q_latent, w.model)
    assert layer.W_uk.weight.shape == (w.heads * w.head, w.kv_latent)
    texts = _texts(latent_attention_flow().svg)
    assert f"KV latent, d_c = {w.kv_latent}" in texts
    assert f"rotary key, d_R = {w.rope}" in texts
    assert f"query latent, {w.q_latent}" in texts
    assert f"{w.heads} heads × {w.head}" in texts
    legend = f"cached per token and layer: d_c + d_R = 16 + 4 = {per_token} numbers (6.4× fewer)"
    assert legend in texts
    assert "multi-head attention caches 2 × H × D = 2 × 8 × 8 = 128" in " ".join(texts)
    description = latent_attention_flow().description
    assert "16 + 4 = 20 numbers per token" in description
    assert "6.4 times fewer" in description


def test_latent_flow_absorbed_form_is_the_layers_and_gives_the_same_output(device):
    w = latent_widths()
    h, dc, c = w.heads, w.kv_latent, w.model
    assert w.w_qk == (h, w.q_latent, dc)
    assert w.w_vo == (h, dc, c)
    texts = _texts(latent_attention_flow().svg)
    assert f"{w.q_latent} × {dc} per head" in texts
    assert f"{dc} × {c} per head" in texts
    # What the figure says of the absorbed form: the same output as the readable one.
    torch.manual_seed(0)
    layer = MultiHeadLatentAttention(LATENT_EXAMPLE).to(device)
    x = random_tensor(1, 2, 5, c, device=device)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, absorbed=True), layer(x), atol=1e-5, rtol=1e-5)


def test_latent_flow_follows_its_config():
    big = latent_attention_flow(DEEPSEEK_V2)
    assert "512 + 64 = 576 numbers per token" in big.description
    assert "2 × 128 × 128 = 32768" in big.description
    assert "56.9 times fewer" in big.description
    assert latent_widths(DEEPSEEK_V2).w_qk == (128, 1536, 512)
    full_rank = latent_widths(LatentConfig())  # no query latent: W_uq reads x
    assert full_rank.q_latent is None
    assert full_rank.w_qk == (4, 32, 16)
    assert "no query latent" in _texts(latent_attention_flow(LatentConfig()).svg)
    with pytest.raises(TypeError, match="config must be a LatentConfig, got dict"):
        latent_attention_flow({"d_model": 64})


# float32, 3 tokens of width 3: the two orders of the same sums differ by ~1e-7.
DELTA_ATOL = 1e-6


def test_delta_step_after_is_one_step_of_the_recurrence():
    s = delta_step()
    k, v, beta, alpha = s.key, s.value, s.beta, s.alpha
    eye = torch.eye(k.shape[0])
    # The module docstring's form: S_t = alpha S_{t-1} (I - beta k k^T) + beta v k^T.
    one_step = alpha * s.before @ (eye - beta * torch.outer(k, k)) + beta * torch.outer(v, k)
    torch.testing.assert_close(s.after, one_step, atol=DELTA_ATOL, rtol=0)
    torch.testing.assert_close(s.decayed + s.correction, s.after, atol=DELTA_ATOL, rtol=0)
    # Read with the unit key, the new state gives (1 - beta) v_old + beta v; the additive one
    # gives S_{t-1} k + v.
    torch.testing.assert_close(s.after @ k, (1 - beta) * s.recalled + beta * v, atol=1e-6, rtol=0)
    torch.testing.assert_close(s.additive @ k, s.before @ k + v, atol=1e-6, rtol=0)


def test_delta_step_states_agree_with_the_chunked_form(device):
    s = delta_step(head_dim=4, tokens=5, seed=1)
    keys, values, betas, alphas = (
        x.to(device)[None, None] for x in (s.keys, s.values, s.betas, s.alphas)
    )
    q = random_tensor(2, 1, 1, 5, 4, device=device)
    out = delta_rule_chunked(q, keys, values, betas, alphas, chunk_size=2)  # (1, 1, T, D_v)
    torch.testing.assert_close(out[0, 0, -1], s.after.to(device) @ q[0, 0, -1], atol=1e-5, rtol=0)


def _cells(svg: str) -> list[str]:
    return [s for s in _texts(svg) if re.fullmatch(r"−?\d+\.\d\d", s)]


def _rounded(*tensors: torch.Tensor) -> list[str]:
    return [f"{v:.2f}".replace("-", "−") for t in tensors for v in t.flatten().tolist()]


def test_delta_rule_diagram_shows_the_packages_numbers():
    s = delta_step()
    shown = _cells(delta_rule_update().svg)
    expected = _rounded(
        s.before,
        s.decayed,
        s.recalled,
        s.value,
        s.value - s.recalled,
        s.correction,
        s.after,
        s.after @ s.key,
        s.additive,
        s.additive @ s.key,
    )
    assert shown == expected
    after = _rounded(s.after)
    start = 2 * 9 + 3 * 3 + 9
    assert shown[start : start + 9] == after  # the drawn S_t, cell by cell
    rows = ", ".join("(" + ", ".join(f"{v:.2f}" for v in row) + ")" for row in s.after.tolist())
    assert f"with rows {rows}" in delta_rule_update().description
    d = delta_rule_update().description
    assert f"beta = {s.beta:.2f}" in d
    assert f"alpha = {s.alpha:.2f}" in d
    assert f"{float((s.after @ s.key - s.value).norm()):.2f} from v" in d
    assert f"{float((s.additive @ s.key - s.value).norm()):.2f} from v" in d
    assert len(_cells(delta_rule_update(head_dim=2, tokens=2).svg)) == 5 * 4 + 5 * 2


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"head_dim": 5}, ValueError, "head_dim must be between 2 and 4"),
        ({"head_dim": 2.5}, TypeError, "head_dim must be a positive int, got float"),
        ({"tokens": 1}, ValueError, "tokens must be between 2 and 8, got 1"),
        ({"tokens": True}, TypeError, "tokens must be a positive int"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
    ],
)
def test_delta_rule_bad_sizes_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=re.escape(words)):
        delta_rule_update(**kwargs)
