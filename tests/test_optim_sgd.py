"""SGD follows the config's nesterov choice; the default keeps Nesterov momentum."""
import torch

from core.runconfig import Optimiser
from core.train.optim import make_optimiser


def _sgd(**extra: object) -> torch.optim.Optimizer:
    cfg = Optimiser.model_validate({"name": "sgd", **extra}).model_dump()
    return make_optimiser(torch.nn.Linear(2, 2).parameters(), cfg)


def test_default_sgd_is_nesterov() -> None:
    assert _sgd().param_groups[0]["nesterov"] is True


def test_plain_sgd_on_request() -> None:
    assert _sgd(nesterov=False).param_groups[0]["nesterov"] is False
