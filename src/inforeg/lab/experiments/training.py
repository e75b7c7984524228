"""A small, seeded CPU training loop for the experiments."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from inforeg.lab.experiments.progress import step

LossFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]  # (logits, y, indices, epoch) -> loss


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG and return a generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_mlp(
    in_dim: int, hidden: int, out_dim: int, depth: int = 2, dropout: float = 0.0
) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with ReLU, then a linear head."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def decay_groups(
    model: nn.Module, weight_decay: float, exempt: Sequence[Tensor]
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: ``model``'s parameters with ``weight_decay``, except those in
    ``exempt`` (e.g. a learnable activation or compander parameter), which get a second group
    without decay when there are any."""
    ids = {id(p) for p in exempt}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups: list[dict[str, Any]] = [{"params": rest, "weight_decay": weight_decay}]
    if exempt:
        groups.append({"params": list(exempt), "weight_decay": 0.0})
    return groups


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches covering ``range(n)`` once."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_epoch(
    opt: torch.optim.Optimizer,
    n: int,
    batch_size: int,
    generator: torch.Generator,
    loss_of: Callable[[Tensor], Tensor],
) -> None:
    """One pass over shuffled minibatches of ``range(n)``: ``loss_of(indices)``, then one
    optimiser step on it."""
    for idx in minibatches(n, batch_size, generator):
        loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    epochs: int,
    generator: torch.Generator,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    on_epoch_start: Callable[[int], None] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> nn.Module:
    """SGD (Nesterov) with a cosine learning-rate schedule; ``loss_fn`` sees dataset indices."""
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    for epoch in range(epochs):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()

        def loss_of(idx: Tensor, epoch: int = epoch) -> Tensor:
            return loss_fn(model(x[idx]), y[idx], idx, epoch)

        train_epoch(opt, x.shape[0], batch_size, generator, loss_of)
        sched.step()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        step(epoch + 1, epochs, "epoch")
    model.eval()
    return model
