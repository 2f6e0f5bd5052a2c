import pytest
import torch

from latentwire.shared.models import ImageShape, get_model, list_families, make_config
from latentwire.shared.models.registry import register_family

SHAPES = [ImageShape(1, 28, 28), ImageShape(3, 24, 40), ImageShape(3, 30, 45)]


@pytest.mark.parametrize("family", ["mlp", "conv", "convlinear"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.channels}x{s.height}x{s.width}")
def test_every_family_round_trips_shapes(family, shape):
    model = get_model(family, shape=shape)
    x = torch.rand(2, shape.channels, shape.height, shape.width) * 2 - 1
    latent = model.encoder(x)
    assert latent.shape[0] == 2
    out = model.decoder(latent)
    assert out.shape == x.shape
    assert model(x).shape == x.shape


def test_families_are_registered_once():
    assert {"mlp", "conv", "convlinear"} <= set(list_families())
    with pytest.raises(ValueError, match="already registered"):
        register_family("conv", object)(torch.nn.Module)


def test_convlinear_latent_is_the_configured_ir_size():
    model = get_model(
        "convlinear", shape=ImageShape(1, 28, 28), latent_dim=20, channels=(8, 16, 32)
    )
    assert model.encoder(torch.zeros(3, 1, 28, 28)).shape == (3, 20)


def test_conv_latent_is_16_channels_at_quarter_size():
    model = get_model("conv", shape=ImageShape(1, 28, 28))
    assert model.encoder(torch.zeros(1, 1, 28, 28)).shape == (1, 16, 7, 7)


def test_config_from_plain_values_rejects_unknown_keys():
    config = make_config("mlp", {"shape": {"channels": 1, "height": 28, "width": 28}})
    assert config.shape == ImageShape(1, 28, 28)
    with pytest.raises(ValueError, match="unknown mlp config keys"):
        make_config("mlp", {"shape": {"channels": 1, "height": 28, "width": 28}, "depth": 3})
    with pytest.raises(KeyError, match="unknown model family"):
        get_model("transformer", shape=ImageShape(1, 28, 28))
