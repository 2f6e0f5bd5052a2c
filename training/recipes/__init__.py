"""The training recipes, one module each, every one standing alone: ``TrainConfig``,
``add_arguments``, ``train(cfg)`` and ``main(argv)`` (what ``latentwire train NAME`` and
``torchrun -m latentwire.training.recipes.NAME`` run), and for export: the model
``FAMILIES`` it trains, the manifest's ``TASK``, the ``PIXELS`` range its models compute
in, ``default_id(cfg)``, ``metrics(model, cfg, data_dir)`` and ``summary(metrics)``.
"""

from __future__ import annotations

from types import ModuleType

from latentwire.training.recipes import ae, classifier, codec, gan, sr

# `latentwire train NAME` -> recipe; `gan` and `dcgan` are one recipe (its SUBCOMMAND_DEFAULTS).
RECIPES: dict[str, ModuleType] = {
    "ae": ae,
    "codec": codec,
    "sr": sr,
    "gan": gan,
    "dcgan": gan,
    "classifier": classifier,
}


def recipe_of(family: str) -> ModuleType:
    """The recipe that trains a model family."""
    for recipe in RECIPES.values():
        if family in recipe.FAMILIES:
            return recipe
    raise ValueError(f"no recipe trains the {family!r} family")
