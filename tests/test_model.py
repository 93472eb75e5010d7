"""SlimCAE: shapes, width slicing, validation and state-dict round trips."""

from __future__ import annotations

import pytest
import torch

from slimcodec.models.factorized import PAPER_WIDTHS, SlimCAE


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SlimCAE((16, 8, 4)).eval()


@pytest.mark.parametrize("width", [16, 8, 4])
def test_forward_gives_latents_of_the_width_at_one_sixteenth_resolution(model, width):
    out = model(torch.rand(2, 3, 32, 48), width)
    assert out["x_hat"].shape == (2, 3, 32, 48)
    assert out["likelihoods"]["y"].shape == (2, width, 2, 3)


def test_narrow_width_uses_the_first_channels_of_the_shared_kernels(model):
    x = torch.rand(1, 3, 32, 32)
    conv = model.g_a[0]
    full = torch.nn.functional.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert torch.allclose(conv(x, 4), full[:, :4], atol=1e-5)


def test_unknown_width_is_refused_with_the_valid_widths(model):
    with pytest.raises(ValueError, match="valid widths: 16, 8, 4"):
        model.analysis(torch.rand(1, 3, 16, 16), 12)


def test_from_state_dict_restores_widths_and_outputs(model):
    clone = SlimCAE.from_state_dict(model.state_dict_for_saving()).eval()
    assert clone.widths == (16, 8, 4)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(clone.analysis(x, 8), model.analysis(x, 8))


def test_channels_last_gives_the_same_result(model):
    x = torch.rand(1, 3, 48, 32)
    ref = model.synthesis(model.analysis(x, 8), 8)
    cl = model.synthesis(model.analysis(x.contiguous(memory_format=torch.channels_last), 8), 8)
    assert torch.allclose(ref, cl, atol=1e-5)


def test_paper_widths_are_the_default():
    assert SlimCAE().widths == PAPER_WIDTHS == (192, 144, 96, 72, 48)
