"""Model families (torch). Importing this package registers every family."""

from latentwire.shared.models import (  # noqa: F401  (registers)
    autoencoders,
    codec,
    gan,
    hyperprior,
    sr,
)
from latentwire.shared.models.registry import (
    ImageShape,
    config_to_dict,
    get_family,
    get_model,
    list_families,
    make_config,
)

__all__ = [
    "ImageShape",
    "config_to_dict",
    "get_family",
    "get_model",
    "list_families",
    "make_config",
]
