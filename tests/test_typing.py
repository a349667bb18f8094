"""The package's types accept what its users write: checked with mypy --strict.

A flag that is only known at run time (``return_weights=flag`` with ``flag: bool``)
must type-check, which needs a ``bool`` overload beside the two literal ones.
(Calling a module, ``layer(x)``, goes through ``nn.Module.__call__``, which torch
types as returning ``Any``; the overloads show when ``forward`` is called by
name, as typed code does to get a precise type.)
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = textwrap.dedent(
    """
    import torch
    from torch import Tensor

    from attention import (
        CausalAttention,
        MultiHeadAttention,
        MultiHeadAttentionWrapper,
        SelfAttentionV1,
        SelfAttentionV2,
        simple_self_attention,
    )
    from attention.dropout import PlacementAttention
    from attention.induction import AttentionOnlyTransformer, InductionConfig


    def run(flag: bool) -> list[Tensor | tuple[Tensor, Tensor]]:
        x = torch.rand(2, 6, 3)
        return [
            simple_self_attention(x[0], return_weights=flag),
            SelfAttentionV1(3, 2).forward(x[0], return_weights=flag),
            SelfAttentionV2(3, 2).forward(x[0], return_weights=flag),
            CausalAttention(3, 2, 6, 0.0).forward(x, return_weights=flag),
            MultiHeadAttentionWrapper(3, 2, 6, 0.0, 2).forward(x, return_weights=flag),
            MultiHeadAttention(3, 2, 6, 0.0, 2).forward(x, return_weights=flag),
            PlacementAttention(3, 2, 6, 0.0).forward(x, return_weights=flag),
            AttentionOnlyTransformer(InductionConfig()).forward(
                torch.zeros(1, 4, dtype=torch.long), return_weights=flag
            ),
        ]


    layer = MultiHeadAttention(3, 2, 6, 0.0, 2)
    out: Tensor = layer.forward(torch.rand(2, 6, 3))
    pair: tuple[Tensor, Tensor] = layer.forward(torch.rand(2, 6, 3), return_weights=True)
    """
)


def test_a_runtime_flag_for_return_weights_type_checks(tmp_path: Path) -> None:
    code = tmp_path / "user_code.py"
    code.write_text(USER_CODE, encoding="utf-8")
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-incremental",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(code),
        ]
    )
    assert status == 0, stdout + stderr


def test_the_type_check_can_fail(tmp_path: Path) -> None:
    code = tmp_path / "user_code.py"
    code.write_text(
        "from attention import MultiHeadAttention\n"
        "import torch\n"
        "layer = MultiHeadAttention(3, 2, 6, 0.0, 2)\n"
        "pair: tuple[int, int] = layer.forward(torch.rand(2, 6, 3), return_weights=True)\n",
        encoding="utf-8",
    )
    stdout, _, status = api.run(
        ["--strict", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"), str(code)]
    )
    assert status == 1
    assert "Incompatible types in assignment" in stdout
