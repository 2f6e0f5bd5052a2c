import numpy as np
import pytest
import torch

from latentwire.shared import coding
from latentwire.shared.models import ImageShape, get_model, list_families, make_config
from latentwire.shared.models.entropy import nonzero_before, spread_prior
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


def small_codec(**prior):
    return get_model(
        "factorized", shape=ImageShape(1, 28, 28), filters=8, latent_channels=4, **prior
    ).eval()


def test_a_spread_prior_starts_at_the_rate_it_had():
    coarse = small_codec()
    with torch.no_grad():
        for bias in coarse.prior.biases:
            bias.normal_(0, 1)
    fine = small_codec(positional_prior=True, prior_contexts=3)
    state = coarse.state_dict()
    spread_prior(state, fine.prior)
    fine.load_state_dict(state)
    y = torch.randn(5, 4, 7, 7) * 2
    assert torch.allclose(coarse.prior(y)[1], fine.prior(y)[1])
    with pytest.raises(ValueError, match="cannot spread"):
        spread_prior(fine.state_dict(), small_codec(prior_contexts=2).prior)


def test_training_contexts_are_the_coders_contexts():
    y = torch.randint(-2, 3, (3, 5, 7, 7)) * (torch.rand(3, 5, 7, 7) < 0.3)
    for latent, context in zip(y.numpy(), nonzero_before(y.float()).numpy(), strict=True):
        expected = coding.nonzero_before(latent.reshape(5, -1) != 0)
        assert np.array_equal(context.reshape(5, -1), expected)


@pytest.mark.parametrize("prior", [{}, {"positional_prior": True, "prior_contexts": 3}])
def test_exported_tables_charge_what_the_prior_estimates(prior):
    """Each symbol is coded with the table made from the density that rated it in training
    (distinct random densities: a table picked in another order would cost far more)."""
    model = small_codec(**prior)
    torch.manual_seed(0)
    with torch.no_grad():
        for bias in model.prior.biases:
            bias.normal_(0, 1)
    y = torch.round(torch.randn(4, 4, 7, 7) * 1.5)
    estimate = -torch.log2(model.prior(y)[1]).sum().item()
    tables = model.prior.tables()
    bits = sum(tables.bits(latent) for latent in y.int().numpy())
    assert bits == pytest.approx(estimate, rel=1e-3)


def test_counted_tables_charge_the_entropy_of_what_they_counted():
    """Latents whose law depends on the position and on the context (channel 1 is zero
    unless channel 0 is not): tables counted on 4,000 of them code 500 fresh ones at
    their entropy, where the untrained prior's density is far off."""
    rng = np.random.default_rng(0)

    def draw(n):
        latents = rng.integers(-1, 2, (n, 4, 7, 7))
        latents[:, 1] = np.where(latents[:, 0] != 0, latents[:, 1] * 3, 0)
        latents[:, :, 0, 0] = 2  # one position always holds the same value
        return latents

    prior = small_codec(positional_prior=True, prior_contexts=2).prior
    learned, counted = prior.tables(), prior.counted_tables(draw(4000), contexts=4)
    assert (counted.positions, counted.contexts) == (49, 4)
    test = draw(500).astype(np.int32)
    entropy = 48 * (3 + 2 / 3) * np.log2(3)  # bits an image: see draw()
    bits = sum(counted.bits(latent) for latent in test) / len(test)
    assert bits == pytest.approx(entropy, rel=0.02)
    assert sum(learned.bits(latent) for latent in test) / len(test) > 1.5 * entropy
    # Channel 0 never has a context above 0: its other contexts keep the learned density
    # (of the prior's last context where the prior has fewer).
    start = learned.radius - counted.radius
    row = learned.probabilities[(0 * 49 + 5) * 2 + 1, start : start + 2 * counted.radius + 1]
    assert np.allclose(counted.probabilities[(0 * 49 + 5) * 4 + 3], row / row.sum(), atol=1e-4)


def test_a_positional_prior_needs_a_fixed_geometry():
    with pytest.raises(ValueError, match="fixed geometry"):
        get_model(
            "factorized", shape=ImageShape(3, 64, 64), transform="bmshj2018", positional_prior=True
        )


def test_hard_quantization_trains_on_the_coded_latent():
    """Training with ``hard``: the synthesis gets the rounded latent and the prior rates it,
    exactly as in use, and no gradient reaches the analysis (its latents stay put)."""
    codec = small_codec(positional_prior=True, prior_contexts=3).train()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    _, hard_likelihoods = codec(x, hard=True)
    x_hat, likelihoods = codec.eval()(x)
    assert torch.equal(hard_likelihoods, likelihoods)
    codec.train()
    x_hat, likelihoods = codec(x, hard=True)
    (x_hat.square().mean() - likelihoods.log().sum()).backward()
    assert all(p.grad is None for p in codec.analysis.parameters())
    assert all(p.grad is not None for p in codec.synthesis.parameters())
    assert all(p.grad is not None for p in codec.prior.parameters())
    _, noisy_likelihoods = codec(x)
    assert not torch.equal(noisy_likelihoods, likelihoods)
