"""What a run config needs to know of each model, without importing torch: its name, the options
its builder takes and the smallest image side it runs on.

A queued training process validates its config and waits for the device with this alone, so a
study's waiting runs do not each hold a loaded torch; core.models adds how each model is built.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.runconfig import LogisticOptions, ModelOptions, SimpleCnnOptions, model_options


@dataclass(frozen=True)
class ModelEntry:
    """A model's options schema and its smallest input side (px) for given options."""

    options: type[ModelOptions] = ModelOptions  # accepted options, their types, bounds and defaults
    min_size: Callable[[dict[str, Any]], int] = field(default=lambda options: 32)

    @property
    def defaults(self) -> dict[str, Any]:
        """The options a model is built with when none are given."""
        return self.options().model_dump()


CATALOGUE: dict[str, ModelEntry] = {
    "logistic": ModelEntry(LogisticOptions, lambda options: 1),
    "simple_cnn": ModelEntry(SimpleCnnOptions, lambda options: 2 ** options["blocks"]),  # each block halves
    "resnet18": ModelEntry(),
    "vgg16": ModelEntry(),
    "vgg19": ModelEntry(),
    "densenet121": ModelEntry(),
    "efficientnet_b0": ModelEntry(),
}


def entry(name: str) -> ModelEntry:
    if name not in CATALOGUE:
        raise ValueError(f"Unknown model '{name}': use one of {', '.join(CATALOGUE)}.")
    return CATALOGUE[name]


def typed_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The model's defaults overlaid by the user's options, typed and bounded by its schema;
    unknown keys are refused (ConfigError, a ValueError) so typos do not vanish."""
    return model_options(entry(name).options, options)


def min_input_size(name: str, options: dict[str, Any] | None = None) -> int:
    """Smallest image side the model runs on, for the config and the UI to check early."""
    return entry(name).min_size(typed_options(name, options))
