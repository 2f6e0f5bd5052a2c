"""The registry of model families: one name, one config class, one builder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ImageShape:
    """Geometry a model is built for: channels, height, width."""

    channels: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if self.height < 1 or self.width < 1:
            raise ValueError(f"height and width must be positive, not {self.height}x{self.width}")


@dataclass(frozen=True)
class Family:
    name: str
    config_class: type
    build: Callable[[Any], nn.Module]


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, config_class: type) -> Callable:
    """Class decorator: register a model family whose constructor takes one config."""

    def wrap(model_class: type[nn.Module]) -> type[nn.Module]:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is already registered")
        _FAMILIES[name] = Family(name, config_class, model_class)
        model_class.family = name
        return model_class

    return wrap


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(
            f"unknown model family {name!r}; known: {', '.join(list_families())}"
        ) from None


def make_config(family: str, values: dict[str, Any]) -> Any:
    """Build a family's config from plain values (as stored in a manifest or checkpoint)."""
    config_class = get_family(family).config_class
    values = dict(values)
    if "shape" in values and isinstance(values["shape"], dict):
        values["shape"] = ImageShape(**values["shape"])
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {family} config keys: {sorted(unknown)}")
    return config_class(**values)


def get_model(family: str, **config: Any) -> nn.Module:
    """A model of a registered family: ``get_model("conv", shape=ImageShape(1, 28, 28))``."""
    return get_family(family).build(make_config(family, config))


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
