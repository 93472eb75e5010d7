"""SlimCAE with the channel-conditional entropy model: a hyperprior start, slice context, gradients."""

from __future__ import annotations

import pytest
import torch

from slimcodec.models.channel import SlimCAEChannel
from slimcodec.models.hyperprior import SlimCAEHyperprior

WIDTHS = (16, 8)  # 4 and 2 slices of 4 channels


@pytest.fixture(scope="module")
def hyperprior() -> SlimCAEHyperprior:
    torch.manual_seed(0)
    return SlimCAEHyperprior(WIDTHS).eval()


def channel(hyperprior: SlimCAEHyperprior) -> SlimCAEChannel:
    return SlimCAEChannel.from_hyperprior(hyperprior, slice_channels=4, context_channels=6).eval()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_model_made_from_a_hyperprior_codes_exactly_as_it_does(hyperprior, width):
    x = torch.rand(1, 3, 128, 64)
    with torch.no_grad():
        ours, theirs = channel(hyperprior)(x, width), hyperprior(x, width)
    assert torch.equal(ours["x_hat"], theirs["x_hat"])
    assert torch.allclose(ours["likelihoods"]["y"], theirs["likelihoods"]["y"], rtol=1e-5)
    assert torch.equal(ours["likelihoods"]["z"], theirs["likelihoods"]["z"])


def test_a_slices_scale_depends_on_earlier_symbols_only_through_q_over_s(hyperprior):
    model = channel(hyperprior)
    torch.nn.init.normal_(model.scale_context[0].outer.weight)
    mean_all, scale_all = torch.zeros(1, 16, 4, 4), torch.ones(1, 16, 4, 4)
    q = torch.randint(-3, 4, (1, 4, 4, 4)).float()
    _, at_one = model.slice_parameters(1, mean_all, scale_all, [q], [q])
    _, at_two = model.slice_parameters(1, mean_all, scale_all, [2 * q], [q], latent_scale=2.0)
    assert torch.allclose(at_one, at_two) and not torch.allclose(at_one, scale_all[:, 4:8])
    first, _ = model.slice_parameters(0, mean_all, scale_all, [], [])
    assert torch.equal(first, mean_all[:, :4])  # slice 0 has no context


def test_training_reaches_every_context_network_the_width_uses(hyperprior):
    model = channel(hyperprior).train()
    with torch.no_grad():
        model.h_s_scale.bias.fill_(2.0)  # σ above its lower bound, where the rate has a gradient
    for net in [*model.scale_context, *model.mean_context]:
        torch.nn.init.normal_(net.outer.weight, std=0.1)
    out = model(torch.rand(2, 3, 64, 64), 8)
    (out["x_hat"].square().mean() - torch.log(out["likelihoods"]["y"]).sum()).backward()

    def reached(net):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())

    assert reached(model.scale_context[0]) and reached(model.mean_context[0])  # slice 1 of 2
    assert not reached(model.scale_context[2])  # slice 3 exists only at width 16


def test_widths_must_be_whole_slices():
    with pytest.raises(ValueError, match="multiples of the slice size"):
        SlimCAEChannel((20, 8), slice_channels=8)


def test_the_default_slice_divides_the_widths():
    from slimcodec.models.channel import SLICE_CHANNELS

    assert SlimCAEChannel().slice_channels == SLICE_CHANNELS == 24
    assert [SlimCAEChannel().slices(w) for w in (192, 144, 96, 72, 48)] == [8, 6, 4, 3, 2]
    assert SlimCAEChannel((8, 4)).slice_channels == 4 and SlimCAEChannel((12, 8)).slice_channels == 4


@pytest.mark.parametrize("widths, kwargs", [(WIDTHS, {"slice_channels": 4, "context_channels": 6}),
                                            ((8, 4), {}), ((24,), {})])
def test_a_state_dict_rebuilds_the_same_slices(widths, kwargs):
    torch.manual_seed(1)
    model = SlimCAEChannel(widths, **kwargs)
    for net in model.scale_context:
        torch.nn.init.normal_(net.outer.weight)
    again = SlimCAEChannel.from_state_dict(model.state_dict_for_saving())
    assert again.config() == model.config() and again.widths == model.widths
    ours, theirs = model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert type(model)(model.widths, **model.config()).config() == model.config()
