"""The optimisation step the package's small training runs share.

:func:`attention.rnn_training.train` and
:func:`attention.induction_scores.train_induction` both take
Adam steps with the gradient norm clipped to 1 and a learning rate that
follows a cosine from ``lr`` down to 0 over the run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def clipped_adam(model: nn.Module, *, lr: float, steps: int) -> Callable[[Tensor], float]:
    """A function that takes one optimisation step of ``model`` on a loss.

    Args:
        model: The module whose parameters are trained.
        lr: The starting learning rate.
        steps: How many steps the run takes: the cosine reaches 0 at the last.

    Returns:
        ``step(loss)``: back-propagates the scalar ``loss``, clips the gradient
        norm to 1, updates the parameters and the learning rate, and returns
        the loss as a float.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def step(loss: Tensor) -> float:
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        schedule.step()
        return loss.item()

    return step
