"""attention._training.clipped_adam: the step the training runs share."""

from __future__ import annotations

import copy

import torch
from torch import nn

from attention._training import clipped_adam


def _loss(model: nn.Module, scale: float) -> torch.Tensor:
    x = torch.linspace(-1, 1, 12, device=model.weight.device).reshape(4, 3)
    return scale * model(x).pow(2).sum()


def test_a_step_is_adam_with_clipping_and_a_cosine_schedule(device):
    torch.manual_seed(0)
    model = nn.Linear(3, 2).to(device)
    by_hand = copy.deepcopy(model)
    step = clipped_adam(model, lr=0.1, steps=5)
    optimizer = torch.optim.Adam(by_hand.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5)
    for scale in (1.0, 1e3, 1.0, 1.0, 1e3):  # large losses: clipping matters
        returned = step(_loss(model, scale))
        loss = _loss(by_hand, scale)
        assert returned == loss.item()  # exact: equal parameters, the same operations
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(by_hand.parameters(), max_norm=1.0)
        optimizer.step()
        schedule.step()
        for mine, theirs in zip(model.parameters(), by_hand.parameters(), strict=True):
            # exact: the same Adam update on the same numbers
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    assert norm > 1.0  # the last large loss was clipped
    assert schedule.get_last_lr() == [0.0]  # exact: the cosine ends at 1 + cos(pi) = 0


def test_clipping_bounds_the_gradient_norm_seen_by_the_optimiser(device):
    model = nn.Linear(3, 2).to(device)
    step = clipped_adam(model, lr=0.0, steps=1)  # lr 0: parameters stay, gradients remain
    step(_loss(model, 1e6))
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total <= 1.0 + 1e-6
