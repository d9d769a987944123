"""The optimiser, its learning-rate schedule and the running average of the weights."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tagserve.model.network import Tagger
from tagserve.training.config import OptimConfig


def make_optimizer(
    network: Tagger, opt: OptimConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The configured optimiser and its 1 / (1 + decay * epoch) learning-rate schedule."""
    optimizer: torch.optim.Optimizer
    if opt.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            network.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    elif opt.optimizer == "nadam":
        optimizer = torch.optim.NAdam(
            network.parameters(), lr=opt.lr, weight_decay=opt.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(network.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: 1.0 / (1.0 + opt.lr_decay * epoch)
    )
    return optimizer, scheduler


def weight_average(network: Tagger, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``network``'s weights (None when ``decay`` is 0).

    The weights after the last step of an epoch are one noisy draw around a good region;
    their running average sits nearer its middle, and costs nothing at inference."""
    if decay == 0:
        return None
    return AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay))


def averaged_network(average: AveragedModel | None) -> Tagger | None:
    """The network inside ``average`` (None without one)."""
    if average is None:
        return None
    network = average.module
    assert isinstance(network, Tagger)
    return network
