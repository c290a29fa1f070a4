"""U-Net (2-D and 3-D): Roy et al.'s placement after every encoder and decoder block, widening after
channel-changing attention, every registered module, odd sizes, and the parameter count written out
from the architecture (Ronneberger et al. 2015; applications.md §7)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import randomize_

import excite
import excite.models as models
from excite.models import count_parameters


def _reference_forward(net: models.UNet, x: torch.Tensor, with_attention: bool = True) -> torch.Tensor:
    """The documented U-Net, written out from its description with the network's own layers:
    block → attention → (pool → next level); at each decoder level upsample, zero-pad to the skip,
    concatenate [skip, upsampled], block → attention; 1x1 head."""
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[net.dim]
    skips = []
    for level, encoder in enumerate(net.encoder):
        if level:
            x = pool(x, 2)
        x = encoder.block(x)
        if with_attention:
            x = encoder.attention(x)
        skips.append(x)
    x = skips.pop()
    for up, decoder in zip(net.upsample, net.decoder):
        skip = skips.pop()
        x = up(x)
        pad = []
        for axis in reversed(range(2, x.dim())):
            pad += [0, skip.shape[axis] - x.shape[axis]]
        x = decoder.block(torch.cat([skip, F.pad(x, pad)], dim=1))
        if with_attention:
            x = decoder.attention(x)
    return net.head(x)


def _count_by_formula(dim, in_channels, out_channels, features, widen=1):
    """Parameters of the U-Net written out: 3^dim kernels without bias + BN in every double conv,
    2^dim transposed convolutions with bias, a 1x1 head with bias. ``widen`` = attention output / input."""
    k3, k2 = 3**dim, 2**dim

    def double_conv(cin, cout):
        return k3 * cin * cout + k3 * cout * cout + 4 * cout

    total, channels, skips = 0, in_channels, []
    for width in features:
        total += double_conv(channels, width)
        channels = widen * width
        skips.append(channels)
    for level in range(len(features) - 2, -1, -1):
        width = features[level]
        total += k2 * channels * width + width
        total += double_conv(width + skips[level], width)
        channels = widen * width
    return total + channels * out_channels + out_channels


@pytest.mark.parametrize("dim", [2, 3])
def test_parameter_count_matches_the_architecture(dim):
    net = models.unet(dim=dim, in_channels=1, out_channels=2, features=(32, 64, 128, 256))
    assert count_parameters(net) == _count_by_formula(dim, 1, 2, (32, 64, 128, 256))
    # The 2-D default, summed by hand: encoder 9,632 + 55,552 + 221,696 + 885,760; decoder (up + block)
    # 131,200 + 442,880, 32,832 + 110,848, 8,224 + 27,776; head 66.
    assert count_parameters(models.unet()) == 1_926_466


@pytest.mark.parametrize("dim, size", [(2, (20, 24)), (3, (8, 12, 8)), (1, (20,))])
def test_attention_after_every_encoder_and_decoder_block(dim, size):
    net = randomize_(
        models.unet(dim=dim, features=(8, 16, 32), attention="se", attention_options={"reduction": 4})
    )
    net.eval()
    # 3 encoder blocks (the last is the bottleneck) + 2 decoder blocks.
    assert len(net.attention_modules()) == 5
    assert [m.channels for m in net.attention_modules()] == [8, 16, 32, 16, 8]
    x = torch.randn(2, 1, *size)
    seen = []
    for unit in list(net.encoder) + list(net.decoder):
        unit.block.register_forward_hook(lambda m, i, o: seen.append(("block", o)))
        unit.attention.register_forward_hook(lambda m, i, o: seen.append(("attention", i[0])))
    with torch.no_grad():
        y = net(x)
        torch.testing.assert_close(y, _reference_forward(net, x))
        # Every attention module takes exactly its block's output, and matters.
        for (kind_a, out), (kind_b, inp) in zip(seen[::2], seen[1::2]):
            assert kind_a == "block" and kind_b == "attention" and inp is out
        assert not torch.allclose(y, _reference_forward(net, x, with_attention=False))
    assert y.shape == (2, 2, *size)


@pytest.mark.parametrize("dim", [2, 3])
def test_channel_changing_attention_widens_what_follows(dim):
    options = {"aggregation": "concat"}
    net = randomize_(
        models.unet(dim=dim, features=(8, 16, 32), attention="scse", attention_options=options)
    ).eval()
    assert count_parameters(net) - sum(
        count_parameters(m) for m in net.attention_modules()
    ) == _count_by_formula(dim, 1, 2, (8, 16, 32), widen=2)
    assert net.upsample[0].in_channels == 64  # the 2x32-channel bottleneck output
    assert net.decoder[0].block.conv1.in_channels == 16 + 2 * 16  # upsampled + widened skip
    assert net.head.in_channels == 16
    x = torch.randn(1, 1, *([12] * dim))
    with torch.no_grad():
        torch.testing.assert_close(net(x), _reference_forward(net, x))


def test_odd_sizes_pad_the_upsampled_map():
    net = randomize_(models.unet(features=(8, 16, 32, 64), attention="eca")).eval()
    x = torch.randn(1, 1, 37, 45)
    with torch.no_grad():
        y = net(x)
        torch.testing.assert_close(y, _reference_forward(net, x))
    assert y.shape == (1, 2, 37, 45)


@pytest.mark.parametrize("name", excite.available())
@pytest.mark.parametrize("dim", [2, 3])
def test_every_module_trains_in_the_study_unet(name, dim):
    size = (24, 22) if dim == 2 else (16, 16, 14)
    net = models.unet(dim=dim, features=(16, 32, 64), attention=name, input_size=size)
    x = torch.randn(2, 1, *size)
    target = torch.randint(0, 2, (2, *size))
    loss = F.cross_entropy(net(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    total = torch.zeros(())
    for module in net.attention_modules():
        for pname, parameter in module.named_parameters():
            assert parameter.grad is not None, f"{name}.{pname} is not in the backward graph"
            total = total + parameter.grad.abs().sum()
    has_parameters = any(True for m in net.attention_modules() for _ in m.parameters())
    assert total > 0 or not has_parameters


def test_per_level_settings_follow_input_size():
    net = models.unet(features=(16, 32, 64, 128), attention="fca", input_size=(64, 48))
    grids = [m.dct_size for m in net.attention_modules()]
    assert grids == [(64, 48), (32, 24), (16, 12), (8, 6), (16, 12), (32, 24), (64, 48)]
    net = models.unet(features=(16, 32, 64), attention="rgse", input_size=(56, 60))
    # 56 // 7 = 60 // 7 = 8 cells: a 7-wide window, an 8x8 fusion, then 4x4 and 2x2 deeper.
    assert [(m.pool_size, m.fusion_kernel) for m in net.attention_modules()] == [
        (7, 8), (7, 4), (7, 2), (7, 4), (7, 8),
    ]  # fmt: skip
    assert net.eval()(torch.randn(1, 1, 56, 60)).shape == (1, 2, 56, 60)
    with pytest.raises(ValueError, match=r"gives \[5, 8\] cells per axis"):
        models.unet(features=(16, 32, 64), attention="rgse", input_size=(56, 35))


def test_variants_and_errors():
    net = models.unet(features=(8, 16), norm="instance", upsampling="interpolate")
    assert isinstance(net.encoder[0].block.norm1, torch.nn.InstanceNorm2d)
    assert net.eval()(torch.randn(1, 1, 10, 10)).shape == (1, 2, 10, 10)
    assert count_parameters(models.unet(features=(8, 16), norm="none")) > 0
    with pytest.raises(ValueError, match="needs input_size|pass input_size"):
        models.unet(attention="rgse")
    with pytest.raises(ValueError, match="1 input channels"):
        models.unet()(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="every spatial size >= 8"):
        models.unet()(torch.randn(1, 1, 4, 16))
    with pytest.raises(ValueError, match="at least 2"):
        models.unet(features=(8,))
    with pytest.raises(ValueError, match="placement must be one of"):
        models.unet(attention="se", placement="residual")
