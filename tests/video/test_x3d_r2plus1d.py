"""X3D and R(2+1)D with SE: structure, published and closed-form parameter counts, SE numerics, gradients."""

import pytest
import torch
import torch.nn.functional as F

import excite
from excite.layers import ECA, SE
from excite.video import x3d, x3d_tiny


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset,published_millions", [("xs", 3.79), ("s", 3.79), ("m", 3.79), ("l", 6.15)])
def test_x3d_presets_match_the_published_parameter_counts(preset, published_millions):
    # PyTorchVideo model zoo (Kinetics-400): X3D-XS/S/M 3.79 M, X3D-L 6.15 M parameters.
    assert round(_count(x3d(preset)) / 1e6, 2) == published_millions


def test_x3d_m_has_se_in_every_other_block_with_one_sixteenth_hidden_width():
    model = x3d("m")
    depths = [len(stage) for stage in model.stages]
    assert depths == [3, 5, 11, 7]  # ceil(2.2 * (1, 2, 5, 3))
    for stage, inner, hidden in zip(model.stages, (54, 108, 216, 432), (8, 8, 16, 32)):
        pattern = [block.has_attention for block in stage]
        assert pattern == [i % 2 == 0 for i in range(len(stage))]
        for block in stage:
            assert block.branch.conv_b.groups == inner
            if block.has_attention:
                se = block.branch.attention
                # round_width(inner/16): 3.4 -> 8 (the minimum), 6.8 -> 8, 13.5 -> 16, 27 -> 24 + 8 (10% rule)
                assert isinstance(se, SE) and se.hidden_channels == hidden


def _x3d_tiny_parameters(classes, attention_every, se=True):
    stem = 3 * 16 * 9 + 16 * 5 + 2 * 16
    total = stem
    dim_in = 16
    for out, inner, hidden, depth in zip((16, 24, 48, 96), (36, 54, 108, 216), (8, 8, 8, 16), (1, 2, 5, 3)):
        for i in range(depth):
            block_in = dim_in if i == 0 else out
            total += block_in * inner + 2 * inner + inner * 27 + 2 * inner + inner * out + 2 * out
            if se and i % attention_every == 0:
                total += 2 * inner * hidden + hidden + inner
            if i == 0:
                total += block_in * out + (2 * out if block_in != out else 0)
        dim_in = out
    head = 96 * 216 + 2 * 216 + 216 * 256 + 256 * classes + classes
    return total + head


@pytest.mark.parametrize("every", [1, 2])
def test_x3d_tiny_parameter_count_matches_the_closed_form(every):
    assert _count(x3d_tiny(attention_every=every)) == _x3d_tiny_parameters(10, every)
    assert _count(x3d_tiny(attention=None)) == _x3d_tiny_parameters(10, every, se=False)


def test_se_sits_after_the_depthwise_bn_and_before_swish():
    torch.manual_seed(0)
    block = x3d_tiny().stages[1][0].branch
    for norm in (block.norm_a, block.norm_b, block.norm_c):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.2, 0.2)
    block.eval()
    x = torch.randn(2, 16, 3, 8, 8)

    def bn(t, norm):
        return F.batch_norm(
            t, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
        )

    y = torch.relu(bn(F.conv3d(x, block.conv_a.weight), block.norm_a))
    y = bn(F.conv3d(y, block.conv_b.weight, stride=(1, 2, 2), padding=1, groups=y.shape[1]), block.norm_b)
    se = block.attention
    z = y.mean(dim=(2, 3, 4))  # squeeze over T, H, W
    gate = torch.sigmoid(torch.relu(z @ se.fc1.weight.T + se.fc1.bias) @ se.fc2.weight.T + se.fc2.bias)
    y = y * gate[:, :, None, None, None]
    y = y * torch.sigmoid(y)  # Swish
    expected = bn(F.conv3d(y, block.conv_c.weight), block.norm_c)
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_x3d_tiny_forward_backward_on_a_small_clip():
    torch.manual_seed(1)
    model = x3d_tiny(num_classes=5)
    clip = torch.randn(2, 3, 4, 32, 32)
    logits = model(clip)
    assert logits.shape == (2, 5)
    F.cross_entropy(logits, torch.tensor([1, 3])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []


def test_x3d_takes_any_excite_attention_or_a_callable():
    model = x3d_tiny(attention="eca", attention_options={"kernel_size": 3})
    modules = [b.branch.attention for b in model.blocks() if b.has_attention]
    assert modules and all(isinstance(m, ECA) and m.dim == 3 for m in modules)
    built = []

    def factory(channels, dim, **options):
        built.append((channels, dim, options))
        return excite.create("simam", channels, dim=dim)

    x3d_tiny(attention=factory, attention_options={}, attention_every=1)
    assert [c for c, _, _ in built] == [36, 54, 54, 108, 108, 108, 108, 108, 216, 216, 216]
    assert {d for _, d, _ in built} == {3}
    with pytest.raises(ValueError, match="attention_every"):
        x3d_tiny(attention_every=0)
    with pytest.raises(ValueError, match="preset"):
        x3d("xxl")


def test_r2plus1d_with_se_adds_exactly_the_se_parameters_and_keeps_torchvision_keys():
    pytest.importorskip("torchvision")
    from torchvision.models.video import R2Plus1D_18_Weights

    published = R2Plus1D_18_Weights.KINETICS400_V1.meta["num_params"]
    plain = excite.video.r2plus1d_18()
    assert _count(plain) == published
    model = excite.video.r2plus1d_18(attention="se")
    widths = [64, 64, 128, 128, 256, 256, 512, 512]
    assert _count(model) == published + sum(2 * c * (c // 16) + c // 16 + c for c in widths)
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".conv2.2." in key for key in missing)
    every_other = excite.video.r2plus1d_18(attention="se", attention_every=2)
    blocks = [
        b
        for layer in (every_other.layer1, every_other.layer2, every_other.layer3, every_other.layer4)
        for b in layer
    ]
    assert [len(b.conv2) == 3 for b in blocks] == [True, False] * 4
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 2, 16, 16)).shape == (1, 400)
