"""ViT with SE and the SQET-style regressor: SE placement numerics, parameter counts, gradients, metrics."""

import math

import numpy as np
import pytest
import torch

from excite.tokens import SQET, SEMultiheadSelfAttention, age_metrics, vit_tiny
from excite.tokens.attention import TokenChannelAttention


def _se_gate(tokens, se, prefix=0):
    z = tokens[:, prefix:].mean(dim=1)
    return torch.sigmoid(torch.relu(z @ se.fc1.weight.T + se.fc1.bias) @ se.fc2.weight.T + se.fc2.bias)


def _reference_attention(module, x):
    """Plain multi-head attention written out, with SE wherever ``module.se_position`` says."""
    n, length, width = x.shape
    heads, head_width = module.heads, width // module.heads
    position = module.se_position
    token_se = module.se.attention if position in ("pre_qkv", "value", "post_attn") else None
    if position == "pre_qkv":
        x = x * _se_gate(x, token_se)[:, None]
    qkv = x @ module.qkv.weight.T + module.qkv.bias
    q, k, v = qkv[..., :width], qkv[..., width : 2 * width], qkv[..., 2 * width :]
    if position == "value":
        v = v * _se_gate(v, token_se)[:, None]
    outputs = []
    for h in range(heads):
        cols = slice(h * head_width, (h + 1) * head_width)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(head_width)
        outputs.append(torch.softmax(scores, dim=-1) @ v[..., cols])
    if position == "head":
        descriptor = torch.stack([o.mean(dim=(1, 2)) for o in outputs], dim=1)
        se = module.se
        gate = torch.sigmoid(
            torch.relu(descriptor @ se.fc1.weight.T + se.fc1.bias) @ se.fc2.weight.T + se.fc2.bias
        )
        outputs = [o * gate[:, h, None, None] for h, o in enumerate(outputs)]
    out = torch.cat(outputs, dim=-1) @ module.proj.weight.T + module.proj.bias
    if position == "post_attn":
        out = out * _se_gate(out, token_se)[:, None]
    return out


@pytest.mark.parametrize("position", [None, "post_attn", "pre_qkv", "value", "head"])
def test_se_positions_in_attention_match_a_written_out_reference(position):
    torch.manual_seed(0)
    module = SEMultiheadSelfAttention(32, 4, se_position=position).double().eval()
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    torch.testing.assert_close(module(x), _reference_attention(module, x), rtol=1e-9, atol=1e-10)


def _vit_parameters(in_ch, classes, image, patch, width, depth, ratio, reduction, se_branches):
    tokens = (image // patch) ** 2
    hidden = int(width * ratio)
    se = 2 * width * (width // reduction) + width // reduction + width
    block = 4 * width + (3 * width * width + 3 * width) + (width * width + width)
    block += width * hidden + hidden + hidden * width + width + se_branches * se
    embed = in_ch * patch * patch * width + width + width + (tokens + 1) * width
    return embed + depth * block + 2 * width + width * classes + classes


@pytest.mark.parametrize("position,branches", [(None, 0), ("attn", 1), ("mlp", 1), ("both", 2)])
def test_vit_tiny_parameter_count_matches_the_closed_form(position, branches):
    model = vit_tiny(se_position=position)
    expected = _vit_parameters(1, 10, 28, 4, 64, 6, 2.0, 4, branches)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_vit_block_se_placement_follows_the_option():
    model = vit_tiny(se_position="mlp", depth=2)
    for block in model.blocks:
        assert block.attn.se is None
        assert isinstance(block.mlp_se, TokenChannelAttention)
        assert block.mlp_se.num_prefix_tokens == 1
    model = vit_tiny(se_position="attn", depth=2, pool="mean")
    for block in model.blocks:
        assert block.attn.se_position == "post_attn" and block.mlp_se is None
        assert block.attn.se.num_prefix_tokens == 0


def test_vit_trains_one_step_and_every_parameter_gets_a_gradient():
    torch.manual_seed(1)
    model = vit_tiny(se_position="both", depth=2)
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_vit_with_fca_uses_the_patch_grid():
    model = vit_tiny(se_position="attn", depth=1, attention="fca", attention_options={"frequencies": "top16"})
    assert model.blocks[0].attn.se.grid == (7, 7)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("position", [None, "post_attn", "pre_qkv", "value", "head"])
def test_sqet_regresses_ages_and_backpropagates(position):
    torch.manual_seed(2)
    model = SQET(
        image_size=(12, 14, 12),
        patch_size=6,
        width=32,
        depth=1,
        heads=4,
        se_position=position,
        age_offset=40.0,
    )
    assert model.grid == (2, 3, 2)
    volumes = torch.randn(2, 1, 12, 14, 12)
    ages = model(volumes)
    assert ages.shape == (2,)
    torch.nn.functional.l1_loss(ages, torch.tensor([30.0, 50.0])).backward()
    assert model.stem[0].weight.grad.abs().sum() > 0
    if position is not None:
        se_grads = [p.grad for n, p in model.named_parameters() if ".se." in n]
        assert se_grads and all(g is not None and g.abs().sum() > 0 for g in se_grads)


def test_sqet_pads_instead_of_dropping_voxels():
    torch.manual_seed(3)
    model = SQET(image_size=(7, 7, 7), patch_size=4, width=16, depth=1, heads=2, stem_channels=0).eval()
    volume = torch.zeros(1, 1, 7, 7, 7)
    baseline = model(volume)
    volume[..., 6, 6, 6] = 5.0  # a voxel in the remainder that a floor-divided patch grid would drop
    assert not torch.allclose(model(volume), baseline)
    with pytest.raises(ValueError, match="image_size"):
        model(torch.zeros(1, 1, 8, 8, 8))


def test_age_metrics_match_numpy():
    rng = np.random.default_rng(0)
    age = rng.uniform(6, 88, 50)
    predicted = age + rng.normal(0, 3, 50) - 0.1 * (age - age.mean())
    metrics = age_metrics(torch.tensor(predicted), torch.tensor(age))
    assert metrics["mae"] == pytest.approx(np.abs(predicted - age).mean())
    assert metrics["pearson_r"] == pytest.approx(np.corrcoef(predicted, age)[0, 1])
    assert metrics["bias_slope"] == pytest.approx(np.polyfit(age, predicted - age, 1)[0])
    with pytest.raises(ValueError, match="equal"):
        age_metrics(torch.ones(3), torch.ones(3))
