"""The RNN comes back: every form of linear attention and of the gated delta rule agrees."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from attention.linear_attention import (
    GatedDeltaNet,
    LinearAttention,
    ShortConv,
    delta_rule_chunked,
    delta_rule_recurrent,
    kv_cache_size,
    linear_attention_chunked,
    linear_attention_quadratic,
    linear_attention_recurrent,
    recurrent_state_size,
)
from tests.conftest import random_tensor

# Float64 forms differ by rounding only (~1e-15 seen); float32 by ~1e-6.
TIGHT = 1e-10
LOOSE = 1e-5
GOLDEN = 1e-4  # the goldens are printed to four decimals


def _qkv(
    device: torch.device, *, t: int = 11, d_v: int = 5, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries and unit-length keys (2, 3, t, 4), values (2, 3, t, d_v), drawn on the CPU."""
    q, k = (random_tensor(s, 2, 3, t, 4, dtype=dtype) for s in (1, 2))
    v = random_tensor(3, 2, 3, t, d_v, dtype=dtype)
    return q.to(device), F.normalize(k, dim=-1).to(device), v.to(device)


def _gates(
    device: torch.device, *, t: int = 11, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """beta in (0, 1) and alpha in (0.5, 1), shape (2, 3, t)."""
    beta = torch.sigmoid(random_tensor(4, 2, 3, t, dtype=dtype))
    alpha = 0.5 + 0.5 * torch.sigmoid(random_tensor(5, 2, 3, t, dtype=dtype))
    return beta.to(device), alpha.to(device)


# -- linear attention -------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 11, 16])
def test_linear_attention_three_forms_agree(device, chunk_size):
    q, k, v = _qkv(device)
    recurrent = linear_attention_recurrent(q, k, v)
    assert recurrent.shape == (2, 3, 11, 5)
    torch.testing.assert_close(
        linear_attention_quadratic(q, k, v), recurrent, atol=TIGHT, rtol=TIGHT
    )
    torch.testing.assert_close(
        linear_attention_chunked(q, k, v, chunk_size=chunk_size), recurrent, atol=TIGHT, rtol=TIGHT
    )


def test_linear_attention_forms_agree_in_float32(device):
    q, k, v = _qkv(device, dtype=torch.float32)
    recurrent = linear_attention_recurrent(q, k, v)
    torch.testing.assert_close(
        linear_attention_quadratic(q, k, v), recurrent, atol=LOOSE, rtol=LOOSE
    )
    torch.testing.assert_close(
        linear_attention_chunked(q, k, v, chunk_size=4), recurrent, atol=LOOSE, rtol=LOOSE
    )


def test_linear_attention_golden(device):
    q, k, v = (random_tensor(s, 1, 2, 6, 3, dtype=torch.float64).to(device) for s in (1, 2, 3))
    expected = torch.tensor([-0.7958, -0.3102, 0.1967], dtype=torch.float64, device=device)
    torch.testing.assert_close(
        linear_attention_recurrent(q, k, v)[0, 1, -1], expected, atol=GOLDEN, rtol=0.0
    )


@given(seed=st.integers(0, 2**16), t=st.integers(1, 9))
def test_linear_attention_outputs_average_the_values_seen(device, seed, t):
    # phi > 0 and the weights of each row sum to 1: every output coordinate lies
    # between the smallest and largest value seen so far.
    q, k, v = (random_tensor(seed + i, 1, 2, t, 3, device=device) for i in range(3))
    out = linear_attention_chunked(q, k, v, chunk_size=4)  # (1, 2, t, 3)
    assert (out >= v.cummin(dim=2).values - 1e-5).all()
    assert (out <= v.cummax(dim=2).values + 1e-5).all()


# -- the gated delta rule ---------------------------------------------------------


def test_delta_rule_recurrent_is_the_papers_formula(device):
    # S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T, o_t = S_t q_t,
    # written out with an explicit identity matrix, one sequence and head at a time.
    q, k, v = _qkv(device, t=6)
    beta, alpha = _gates(device, t=6)
    out = delta_rule_recurrent(q, k, v, beta, alpha)
    eye = torch.eye(4, dtype=q.dtype, device=device)
    for b in range(2):
        for h in range(3):
            s = torch.zeros(5, 4, dtype=q.dtype, device=device)
            for t in range(6):
                kt, bt = k[b, h, t], beta[b, h, t]
                s = alpha[b, h, t] * s @ (eye - bt * torch.outer(kt, kt))
                s = s + bt * torch.outer(v[b, h, t], kt)
                torch.testing.assert_close(out[b, h, t], s @ q[b, h, t], atol=TIGHT, rtol=TIGHT)


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 5, 11, 32])
@pytest.mark.parametrize("gated", [True, False], ids=["gated", "plain"])
def test_delta_rule_chunked_equals_recurrent(device, chunk_size, gated):
    q, k, v = _qkv(device)
    beta, alpha = _gates(device)
    gate = alpha if gated else None
    recurrent = delta_rule_recurrent(q, k, v, beta, gate)
    assert recurrent.shape == (2, 3, 11, 5)
    chunked = delta_rule_chunked(q, k, v, beta, gate, chunk_size=chunk_size)
    torch.testing.assert_close(chunked, recurrent, atol=TIGHT, rtol=TIGHT)


def test_delta_rule_alpha_one_is_the_plain_delta_rule(device):
    q, k, v = _qkv(device)
    beta, _ = _gates(device)
    ones = torch.ones_like(beta)
    plain = delta_rule_recurrent(q, k, v, beta)
    torch.testing.assert_close(
        delta_rule_chunked(q, k, v, beta, ones, chunk_size=4), plain, atol=TIGHT, rtol=TIGHT
    )


def test_delta_rule_forms_agree_in_float32(device):
    q, k, v = _qkv(device, t=64, dtype=torch.float32)
    beta, alpha = _gates(device, t=64, dtype=torch.float32)
    recurrent = delta_rule_recurrent(q, k, v, beta, alpha)
    chunked = delta_rule_chunked(q, k, v, beta, alpha, chunk_size=16)
    torch.testing.assert_close(chunked, recurrent, atol=1e-4, rtol=1e-4)


@given(seed=st.integers(0, 2**16), t=st.integers(1, 12), chunk_size=st.integers(1, 8))
def test_delta_rule_chunk_size_changes_nothing(device, seed, t, chunk_size):
    q, k, v = (
        random_tensor(seed + i, 1, 2, t, 3, dtype=torch.float64, device=device) for i in range(3)
    )
    k = F.normalize(k, dim=-1)
    beta = torch.rand(1, 2, t, dtype=torch.float64, device=device)
    alpha = 1 - 0.9 * torch.rand(1, 2, t, dtype=torch.float64, device=device)
    torch.testing.assert_close(
        delta_rule_chunked(q, k, v, beta, alpha, chunk_size=chunk_size),
        delta_rule_recurrent(q, k, v, beta, alpha),
        atol=TIGHT,
        rtol=TIGHT,
    )


def test_delta_rule_golden(device):
    q, k, v = (random_tensor(s, 1, 2, 6, 3, dtype=torch.float64) for s in (1, 2, 3))
    beta = torch.sigmoid(random_tensor(4, 1, 2, 6, dtype=torch.float64))
    alpha = torch.sigmoid(random_tensor(5, 1, 2, 6, dtype=torch.float64) + 2)
    q, k, v, beta, alpha = (x.to(device) for x in (q, F.normalize(k, dim=-1), v, beta, alpha))
    gated = torch.tensor([0.3130, -0.9511, 0.9782], dtype=torch.float64, device=device)
    plain = torch.tensor([0.2888, -0.8771, 1.1092], dtype=torch.float64, device=device)
    torch.testing.assert_close(
        delta_rule_chunked(q, k, v, beta, alpha)[0, 1, -1], gated, atol=GOLDEN, rtol=0.0
    )
    torch.testing.assert_close(
        delta_rule_chunked(q, k, v, beta)[0, 1, -1], plain, atol=GOLDEN, rtol=0.0
    )


def _one_head(*rows: list[float], device: torch.device) -> torch.Tensor:
    """Rows stacked into a (1, 1, T, D) float64 tensor."""
    return torch.tensor(rows, dtype=torch.float64, device=device)[None, None]


@pytest.mark.parametrize("form", ["recurrent", "chunked"])
def test_delta_rule_recalls_and_overwrites(device, form):
    run = delta_rule_recurrent if form == "recurrent" else delta_rule_chunked
    key, other = [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]  # unit length, orthogonal
    keys = _one_head(key, other, key, key, device=device)
    values = _one_head([1.0, 2.0], [7.0, 7.0], [-3.0, 5.0], [0.0, 0.0], device=device)
    beta = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]], dtype=torch.float64, device=device)
    out = run(keys, keys, values, beta)  # each token queries with its own key
    torch.testing.assert_close(
        out[0, 0, 0], values[0, 0, 0], atol=TIGHT, rtol=TIGHT
    )  # written, recalled
    torch.testing.assert_close(
        out[0, 0, 1], values[0, 0, 1], atol=TIGHT, rtol=TIGHT
    )  # no interference
    torch.testing.assert_close(out[0, 0, 2], values[0, 0, 2], atol=TIGHT, rtol=TIGHT)  # overwritten
    torch.testing.assert_close(
        out[0, 0, 3], values[0, 0, 2], atol=TIGHT, rtol=TIGHT
    )  # beta = 0 writes nothing
    # Linear attention only adds: the same key written twice recalls the mean value.
    twice, pair = keys[..., [0, 2], :], values[..., [0, 2], :]  # (1, 1, 2, 3), (1, 1, 2, 2)
    added = linear_attention_recurrent(twice, twice, pair)
    torch.testing.assert_close(added[0, 0, 1], pair[0, 0].mean(0), atol=TIGHT, rtol=TIGHT)


def test_delta_rule_repeated_writes_close_the_gap_geometrically(device):
    # Recall after n writes of (k, v) at rate beta is (1 - (1 - beta)^n) v.
    n, rate = 5, 0.3
    keys = _one_head(*[[1.0, 0.0]] * n, device=device)
    values = _one_head(*[[2.0]] * n, device=device)
    beta = torch.full((1, 1, n), rate, dtype=torch.float64, device=device)
    expected = 2.0 * (1 - (1 - rate) ** torch.arange(1, n + 1, dtype=torch.float64, device=device))
    out = delta_rule_chunked(keys, keys, values, beta, chunk_size=2)
    torch.testing.assert_close(out[0, 0, :, 0], expected, atol=TIGHT, rtol=TIGHT)


def test_delta_rule_gate_fades_the_memory(device):
    # Write once, then three tokens that write nothing but decay by 0.5 each.
    keys = _one_head(*[[1.0, 0.0]] * 4, device=device)
    values = _one_head([4.0], [9.0], [9.0], [9.0], device=device)
    beta = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=torch.float64, device=device)
    alpha = torch.tensor([[[1.0, 0.5, 0.5, 0.5]]], dtype=torch.float64, device=device)
    out = delta_rule_chunked(keys, keys, values, beta, alpha, chunk_size=3)
    expected = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64, device=device)
    torch.testing.assert_close(out[0, 0, :, 0], expected, atol=TIGHT, rtol=TIGHT)


def test_chunked_gradients_equal_the_recurrent_ones(device):
    q, k, v = _qkv(device, t=9)
    beta, alpha = _gates(device, t=9)
    leaves = [x.clone().requires_grad_() for x in (q, k, v, beta, alpha)]
    outs = (delta_rule_recurrent(*leaves), delta_rule_chunked(*leaves, chunk_size=4))
    grads = [torch.autograd.grad(out.pow(2).sum(), leaves) for out in outs]
    for chunked, recurrent in zip(grads[1], grads[0], strict=True):
        assert chunked.abs().sum() > 0
        torch.testing.assert_close(chunked, recurrent, atol=TIGHT, rtol=TIGHT)


# -- causality --------------------------------------------------------------------

FORMS: list[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = [
    linear_attention_quadratic,
    linear_attention_recurrent,
    lambda q, k, v: linear_attention_chunked(q, k, v, chunk_size=4),
    lambda q, k, v: delta_rule_recurrent(q, k, v, torch.full_like(q[..., 0], 0.5)),
    lambda q, k, v: delta_rule_chunked(q, k, v, torch.full_like(q[..., 0], 0.5), chunk_size=4),
]


@pytest.mark.parametrize(
    "form", FORMS, ids=["lin-quad", "lin-rec", "lin-chunk", "dr-rec", "dr-chunk"]
)
def test_changing_a_later_token_leaves_earlier_outputs_alone(device, form):
    q, k, v = _qkv(device)
    before = form(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6], v2[:, :, 6] = -k[:, :, 6], 10.0  # change token 6 only
    after = form(q, k2, v2)
    torch.testing.assert_close(after[:, :, :6], before[:, :, :6], atol=TIGHT, rtol=TIGHT)
    assert not torch.allclose(after[:, :, 6:], before[:, :, 6:], atol=1e-3, rtol=0.0)


# -- layers -----------------------------------------------------------------------

LAYERS = [LinearAttention, GatedDeltaNet]


@pytest.mark.parametrize("cls", LAYERS)
def test_layer_modes_agree_and_are_causal(device, cls):
    torch.manual_seed(0)
    chunked = cls(12, num_heads=3, chunk_size=4).to(device=device, dtype=torch.float64)
    recurrent = cls(12, num_heads=3, mode="recurrent").to(device=device, dtype=torch.float64)
    recurrent.load_state_dict(chunked.state_dict())
    x = random_tensor(7, 2, 10, 12, dtype=torch.float64).to(device)
    out = chunked(x)
    assert out.shape == (2, 10, 12)
    torch.testing.assert_close(recurrent(x), out, atol=TIGHT, rtol=TIGHT)
    x2 = x.clone()
    x2[:, 7:] = 0.0
    torch.testing.assert_close(chunked(x2)[:, :7], out[:, :7], atol=TIGHT, rtol=TIGHT)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (LinearAttention, [-0.6537, -0.0449, -0.1750, -0.1771]),
        (GatedDeltaNet, [-0.4297, 0.1210, -0.1693, -0.1129]),
    ],
)
def test_layer_golden(device, cls, expected):
    torch.manual_seed(0)
    layer = cls(8, num_heads=2).to(device)  # weights drawn on the CPU, then moved
    out = layer(random_tensor(6, 1, 5, 8).to(device))
    torch.testing.assert_close(
        out[0, -1, :4], torch.tensor(expected, device=device), atol=GOLDEN, rtol=0.0
    )


@pytest.mark.parametrize("cls", LAYERS)
def test_every_parameter_gets_a_gradient_through_the_chunked_form(device, cls):
    torch.manual_seed(0)
    layer = cls(16, num_heads=4, chunk_size=8).to(device)
    layer(random_tensor(8, 2, 20, 16, device=device)).pow(2).mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gated_deltanet_adds_beta_and_alpha_projections():
    layer = GatedDeltaNet(8, num_heads=2)
    names = [name for name, _ in layer.named_children()]
    assert names == ["W_query", "W_key", "W_value", "out_proj", "W_beta", "W_alpha"]
    assert layer.W_beta.out_features == layer.W_alpha.out_features == 2


# -- the short convolution --------------------------------------------------------


def _conv_by_the_formula(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``y_t[c] = sum_j w[c, j] x_{t-K+1+j}[c]``, one token at a time, zeros before the start."""
    k = weight.shape[-1]
    out = torch.zeros_like(x)  # (B, T, C)
    for t in range(x.shape[1]):
        for j in range(k):
            source = t - k + 1 + j
            if source >= 0:
                out[:, t] += weight[:, 0, j] * x[:, source]  # (C,) * (B, C)
    return out


@pytest.mark.parametrize("kernel", [1, 2, 4])
def test_short_conv_equals_its_formula(device, kernel):
    torch.manual_seed(0)
    conv = ShortConv(5, kernel).to(device=device, dtype=torch.float64)
    x = random_tensor(1, 2, 7, 5, dtype=torch.float64).to(device)
    out = conv(x)
    assert out.shape == (2, 7, 5)
    expected = _conv_by_the_formula(x, conv.conv.weight.detach())
    torch.testing.assert_close(out, expected, atol=TIGHT, rtol=TIGHT)


def test_short_conv_with_kernel_one_and_unit_weights_is_the_identity(device):
    conv = ShortConv(6, 1).to(device)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0)
    x = random_tensor(2, 3, 5, 6).to(device)
    torch.testing.assert_close(conv(x), x, atol=0.0, rtol=0.0)  # x * 1.0 is x, exactly


@given(seed=st.integers(0, 2**16), t=st.integers(1, 9), kernel=st.integers(1, 4))
def test_short_conv_output_at_t_ignores_later_tokens(device, seed, t, kernel):
    torch.manual_seed(seed)
    conv = ShortConv(3, kernel).to(device=device, dtype=torch.float64)
    x = random_tensor(seed, 2, 10, 3, dtype=torch.float64).to(device)
    changed = x.clone()
    changed[:, t:] = 100.0  # every token from t on
    torch.testing.assert_close(conv(changed)[:, :t], conv(x)[:, :t], atol=TIGHT, rtol=TIGHT)


@given(seed=st.integers(0, 2**16), t=st.integers(1, 9), kernel=st.integers(1, 4))
def test_short_conv_output_at_t_sees_only_the_last_k_tokens(device, seed, t, kernel):
    torch.manual_seed(seed)
    conv = ShortConv(3, kernel).to(device=device, dtype=torch.float64)
    x = random_tensor(seed, 2, 10, 3, dtype=torch.float64).to(device)
    changed = x.clone()
    changed[:, : max(t - kernel + 1, 0)] = 100.0  # every token more than K - 1 before t
    torch.testing.assert_close(conv(changed)[:, t], conv(x)[:, t], atol=TIGHT, rtol=TIGHT)


@pytest.mark.parametrize("cls", LAYERS)
def test_short_conv_of_kernel_one_with_unit_weights_changes_nothing(device, cls):
    torch.manual_seed(0)
    plain = cls(8, num_heads=2).to(device=device, dtype=torch.float64)
    with_conv = cls(8, num_heads=2, short_conv=1).to(device=device, dtype=torch.float64)
    with_conv.load_state_dict(plain.state_dict(), strict=False)  # the convs are not in plain
    assert with_conv.short_convs is not None
    with torch.no_grad():
        for conv in with_conv.short_convs:
            conv.conv.weight.fill_(1.0)
    x = random_tensor(4, 2, 9, 8, dtype=torch.float64).to(device)
    torch.testing.assert_close(with_conv(x), plain(x), atol=TIGHT, rtol=TIGHT)


@pytest.mark.parametrize("cls", LAYERS)
def test_layers_with_short_conv_agree_across_modes_and_are_causal(device, cls):
    torch.manual_seed(0)
    chunked = cls(12, num_heads=3, chunk_size=4, short_conv=3)
    chunked = chunked.to(device=device, dtype=torch.float64)
    recurrent = cls(12, num_heads=3, mode="recurrent", short_conv=3)
    recurrent = recurrent.to(device=device, dtype=torch.float64)
    recurrent.load_state_dict(chunked.state_dict())
    x = random_tensor(7, 2, 10, 12, dtype=torch.float64).to(device)
    out = chunked(x)
    assert out.shape == (2, 10, 12)
    torch.testing.assert_close(recurrent(x), out, atol=TIGHT, rtol=TIGHT)
    x2 = x.clone()
    x2[:, 7:] = 0.0
    torch.testing.assert_close(chunked(x2)[:, :7], out[:, :7], atol=TIGHT, rtol=TIGHT)
    assert not torch.allclose(chunked(x2)[:, 7:], out[:, 7:], atol=1e-3, rtol=0.0)


@pytest.mark.parametrize("cls", LAYERS)
def test_the_defaults_build_the_same_modules_and_weights_as_before(cls):
    torch.manual_seed(0)
    default = cls(8, num_heads=2)
    torch.manual_seed(0)
    explicit = cls(8, num_heads=2, short_conv=0)
    assert default.short_convs is None
    assert list(default.state_dict()) == list(explicit.state_dict())
    for name, tensor in default.state_dict().items():
        assert torch.equal(tensor, explicit.state_dict()[name]), name  # exact: the same draws


def test_alpha_bias_sets_the_decay_bias_and_leaves_the_other_weights(device):
    torch.manual_seed(0)
    default = GatedDeltaNet(8, num_heads=2).to(device)
    torch.manual_seed(0)
    biased = GatedDeltaNet(8, num_heads=2, alpha_bias=-4.0).to(device)
    assert biased.W_alpha.bias.tolist() == [-4.0, -4.0]  # exact: a filled constant
    for name, tensor in default.state_dict().items():
        if name != "W_alpha.bias":
            assert torch.equal(tensor, biased.state_dict()[name]), name  # exact: the same draws
    x = random_tensor(5, 1, 4, 8).to(device)
    alpha = torch.exp(-F.softplus(biased.W_alpha(x)))  # (B, T, H)
    assert alpha.shape == (1, 4, 2)
    assert (alpha > 0.9).all()  # bias -4 and small weights: a memory that hardly fades


def test_short_conv_adds_three_convolutions_after_the_projections():
    layer = GatedDeltaNet(8, num_heads=2, short_conv=4)
    names = [name for name, _ in layer.named_children()]
    assert names == ["W_query", "W_key", "W_value", "out_proj", "short_convs", "W_beta", "W_alpha"]
    convs = [m for m in layer.modules() if isinstance(m, ShortConv)]
    assert [c.conv.weight.shape for c in convs] == [
        (8, 1, 4)
    ] * 3  # depthwise: one filter a channel


# -- state sizes ------------------------------------------------------------------


def test_state_sizes():
    assert recurrent_state_size(4, 16) == 4 * 16 * 16
    assert recurrent_state_size(4, 16, normaliser=True) == 4 * 16 * 16 + 4 * 16
    assert kv_cache_size(4, 16, 100) == 2 * 4 * 16 * 100
    # The cache catches up with the state at T = D / 2 tokens and then keeps growing.
    assert kv_cache_size(4, 16, 8) == recurrent_state_size(4, 16)
    assert kv_cache_size(4, 16, 9) > recurrent_state_size(4, 16, normaliser=True)


# -- bad inputs -------------------------------------------------------------------

Q = torch.zeros(1, 2, 3, 4)
BETA = torch.full((1, 2, 3), 0.5)
BAD = [
    (
        lambda: linear_attention_quadratic(Q[0], Q, Q),
        ValueError,
        r"q must have shape \(B, H, T, D\) \(4-D\), got 3",
    ),
    (
        lambda: linear_attention_recurrent(Q, Q[..., :3], Q),
        ValueError,
        r"k must have the shape of q, \(1, 2, 3, 4\), got \(1, 2, 3, 3\)",
    ),
    (
        lambda: linear_attention_chunked(Q, Q, Q[:, :1]),
        ValueError,
        r"v must have the same number of heads H as q \(2\), got 1",
    ),
    (
        lambda: linear_attention_chunked(Q, Q, Q, chunk_size=0),
        ValueError,
        r"chunk_size must be a positive int, got 0",
    ),
    (
        lambda: linear_attention_chunked(Q, Q, Q, chunk_size=True),
        TypeError,
        r"chunk_size must be a positive int, got bool",
    ),
    (
        lambda: linear_attention_quadratic(Q.long(), Q, Q),
        TypeError,
        r"q must be a floating-point tensor, got dtype torch.int64",
    ),
    (
        lambda: linear_attention_quadratic(Q, Q.double(), Q),
        TypeError,
        r"k must have the dtype of q, torch.float32, got torch.float64",
    ),
    (
        lambda: delta_rule_recurrent(Q, Q, Q, BETA + 1),
        ValueError,
        r"beta must lie in \[0, 1\], got values 1.5 to 1.5",
    ),
    (
        lambda: delta_rule_chunked(Q, Q, Q, BETA, BETA * 0),
        ValueError,
        r"alpha must lie in \(0, 1\], got values 0 to 0",
    ),
    (
        lambda: delta_rule_chunked(Q, Q, Q, BETA[..., :2]),
        ValueError,
        r"beta must have shape \(B, H, T\) = \(1, 2, 3\), got \(1, 2, 2\)",
    ),
    (
        lambda: delta_rule_recurrent(Q, Q, Q, 0.5),  # type: ignore[arg-type]
        TypeError,
        r"beta must be a torch.Tensor, got float",
    ),
    (
        lambda: LinearAttention(10, num_heads=3),
        ValueError,
        r"num_heads must divide d_model, got d_model=10 and num_heads=3",
    ),
    (
        lambda: GatedDeltaNet(8, num_heads=2, mode="parallel"),  # type: ignore[arg-type]
        ValueError,
        r"mode must be 'chunked' or 'recurrent', got 'parallel'",
    ),
    (
        lambda: GatedDeltaNet(8, num_heads=2)(torch.zeros(1, 3, 6)),
        ValueError,
        r"x must have last dimension d_in=8, got 6",
    ),
    (
        lambda: LinearAttention(8, num_heads=2)(torch.zeros(3, 8)),
        ValueError,
        r"x must have shape \(B, T, C\) \(3-D\)",
    ),
    (
        lambda: LinearAttention(8, num_heads=2, short_conv=-1),
        ValueError,
        r"short_conv must be an int >= 0, got -1",
    ),
    (
        lambda: GatedDeltaNet(8, num_heads=2, short_conv=2.0),  # type: ignore[arg-type]
        TypeError,
        r"short_conv must be an int >= 0, got float 2.0",
    ),
    (
        lambda: GatedDeltaNet(8, num_heads=2, alpha_bias="-4"),  # type: ignore[arg-type]
        TypeError,
        r"alpha_bias must be a float or None, got str",
    ),
    (
        lambda: GatedDeltaNet(8, num_heads=2, alpha_bias=float("nan")),
        ValueError,
        r"alpha_bias must be finite, got nan",
    ),
    (lambda: ShortConv(0, 2), ValueError, r"channels must be a positive int, got 0"),
    (lambda: ShortConv(4, 0), ValueError, r"kernel_size must be a positive int, got 0"),
    (
        lambda: ShortConv(4, 2)(torch.zeros(1, 3, 5)),
        ValueError,
        r"x must have last dimension d_in=4, got 5",
    ),
    (
        lambda: ShortConv(4, 2)(torch.zeros(3, 4)),
        ValueError,
        r"x must have shape \(B, T, C\) \(3-D\)",
    ),
    (lambda: recurrent_state_size(0, 16), ValueError, r"num_heads must be a positive int, got 0"),
    (
        lambda: kv_cache_size(4, 16, 2.5),  # type: ignore[arg-type]
        TypeError,
        r"tokens must be a positive int, got float 2.5",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_name_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()
