"""SlimCAE with the mean-scale hyperprior: shapes, slicing, mixed quantization, warm start."""

from __future__ import annotations

import pytest
import torch

from slimcodec.models import ARCHITECTURES, architecture_of
from slimcodec.models.factorized import SlimCAE
from slimcodec.models.hyperprior import SlimCAEHyperprior, gaussian_likelihood


@pytest.fixture(scope="module")
def model() -> SlimCAEHyperprior:
    torch.manual_seed(0)
    return SlimCAEHyperprior((16, 8))


@pytest.mark.parametrize("width", [16, 8])
def test_forward_gives_y_at_one_sixteenth_and_z_at_one_sixty_fourth(model, width):
    out = model.train()(torch.rand(2, 3, 128, 64), width)
    assert out["x_hat"].shape == (2, 3, 128, 64)
    assert out["likelihoods"]["y"].shape == (2, width, 8, 4)
    assert out["likelihoods"]["z"].shape == (2, width, 2, 1)


def test_hyper_networks_use_the_first_channels_of_shared_kernels(model):
    y = torch.rand(1, 16, 8, 8)
    full = model.hyper_analysis(y, 16)
    conv = model.h_a[0]
    first = torch.nn.functional.conv2d(y[:, :8], conv.weight[:8, :8], conv.bias[:8], 1, 1)
    assert torch.allclose(conv(y[:, :8], 8), first, atol=1e-6)
    assert model.hyper_analysis(y[:, :8], 8).shape == (1, 8, 2, 2) and full.shape == (1, 16, 2, 2)


def test_synthesis_sees_rounded_latents_and_gradients_pass_through(model):
    model.train()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    out = model(x, 8)
    (out["x_hat"].mean() + torch.log(out["likelihoods"]["y"]).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.h_s_mean.weight.grad is not None and model.h_s_scale.weight.grad is not None


def test_eval_likelihoods_are_of_the_rounded_residuals(model):
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x, 8), model(x, 8)
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])  # no noise at eval


def test_gaussian_likelihood_sums_to_one_over_the_integers():
    values = torch.arange(-60, 61, dtype=torch.float64)[:, None]
    scales = torch.tensor([[0.05, 0.5, 3.0, 10.0]], dtype=torch.float64)
    total = gaussian_likelihood(values, scales).sum(0)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_warm_start_keeps_the_factorized_transforms_and_gdns():
    torch.manual_seed(1)
    factorized = SlimCAE((16, 8)).eval()
    hyper = SlimCAEHyperprior.from_factorized(factorized).eval()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(hyper.analysis(x, 8), factorized.analysis(x, 8))
    y = factorized.analysis(x, 16)
    assert torch.equal(hyper.synthesis(y, 16), factorized.synthesis(y, 16))


def test_registry_names_each_architecture():
    assert architecture_of(SlimCAEHyperprior((8,))) == "slimcae-hyperprior"
    assert architecture_of(SlimCAE((8,))) == "slimcae-factorized"
    assert set(ARCHITECTURES) == {"slimcae-factorized", "slimcae-hyperprior", "slimcae-channel"}
    from slimcodec.models.channel import SlimCAEChannel

    assert architecture_of(SlimCAEChannel((8,))) == "slimcae-channel"  # a subclass is its own architecture
