"""The transformers comparison (benchmarks/hf_gpt2.py) compares like with like.

Needs the benchmark extra (transformers); skips without it. Nothing here
times anything: the tests check the weight copy and the files at toy sizes.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from attention.gpt import GPTModel

pytest.importorskip("transformers", reason="the benchmark extra: pip install -e '.[bench]'")

from benchmarks import hf_gpt2


def test_the_copied_weights_give_transformers_our_logits_and_ids():
    plan = hf_gpt2.PLANS["tiny"]
    torch.manual_seed(0)
    model = GPTModel(plan.config).eval()
    hf = hf_gpt2.hf_model(model)
    ids = torch.randint(
        0, plan.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=1e-5, rtol=1e-5)
    checked = hf_gpt2.check_equal(model, hf, ids, plan)
    assert checked["same_greedy_ids_float32"] is True
    assert checked["max_abs_logit_diff_float32"] < 1e-5


def test_a_config_without_qkv_bias_is_refused():
    plan = hf_gpt2.PLANS["tiny"]
    model = GPTModel(dataclasses.replace(plan.config, qkv_bias=False))
    with pytest.raises(ValueError, match=r"GPT-2 has query, key and value biases"):
        hf_gpt2.hf_model(model)


def test_a_tiny_run_writes_every_ratio(tmp_path):
    assert hf_gpt2.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "hf_gpt2.json").read_text(encoding="utf-8"))
    groups = payload["groups"]
    expected = {f"{d} {t}" for d in ("float32", "bfloat16") for t in ("forward", "generate")}
    assert {g["group"].removeprefix("cpu ") for g in groups if g["device"] == "cpu"} == expected
    for group in groups:
        by = {r["variant"]: r for r in group["records"]}
        assert set(by) == {"ours (manual)", "ours (sdpa)", "transformers"}
        key = "wall_min_s" if group["clock"] == "wall" else "min_s"
        for record in by.values():  # each ratio divides two minima of the same group
            assert record["ratio_to_transformers"] == pytest.approx(
                record[key] / by["transformers"][key], rel=1e-12
            )
    assert len(payload["targets"]) == 2 * len(groups)
    assert all(t["limit"] == hf_gpt2.GOAL for t in payload["targets"])
