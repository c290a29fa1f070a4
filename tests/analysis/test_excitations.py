"""excite.analysis.excitations on constructed models whose gates are known functions of the class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import excite
from excite._nd import GateTap, spatial_mean
from excite.analysis import between_class_spread, correlation_ratio, excitations, gate_taps


class KnownGate(nn.Module):
    """Passes ``sigmoid(x[:, columns])`` through a GateTap and returns x unchanged."""

    def __init__(self, columns):
        super().__init__()
        self.columns = list(columns)
        self.tap = GateTap()

    def forward(self, x):
        self.tap(torch.sigmoid(x[:, self.columns]))
        return x


def _eta_squared(values: np.ndarray, labels: np.ndarray) -> float:
    """ANOVA effect size by definition: sum of squares between classes / total sum of squares."""
    grand = values.mean()
    total = ((values - grand) ** 2).sum()
    if total < 1e-12:
        return 0.0
    between = sum((labels == k).sum() * (values[labels == k].mean() - grand) ** 2 for k in np.unique(labels))
    return between / total


def _data(n=400, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    class_signal = labels.double() / classes + 0.05 * torch.randn(n, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, generator=generator, dtype=torch.float64)
    constant = torch.zeros(n, dtype=torch.float64)
    return torch.stack([class_signal, noise, constant], dim=1), labels


def test_scores_match_the_anova_definition():
    x, labels = _data()
    model = nn.Sequential(KnownGate([1, 2]), KnownGate([0, 1, 2])).double()
    loader = [(x[i : i + 64], labels[i : i + 64]) for i in range(0, x.shape[0], 64)]
    report = excitations(model, loader, classes=["a", "b", "c", "d"])
    assert [layer.name for layer in report.layers] == ["0", "1"]
    gates = torch.sigmoid(x).numpy()
    y = labels.numpy()
    expected_late = np.mean([_eta_squared(gates[:, c], y) for c in range(3)])
    expected_early = np.mean([_eta_squared(gates[:, c], y) for c in (1, 2)])
    assert report.layers[1].specificity == pytest.approx(expected_late, rel=1e-6)
    assert report.layers[0].specificity == pytest.approx(expected_early, rel=1e-6)
    # The class-coded channel is highly specific, the constant channel scores 0, noise is near 0.
    per_channel = report.layers[1].per_channel
    assert per_channel[0] > 0.9 and per_channel[2] == 0.0 and per_channel[1] < 0.05
    assert report.layers[1].specificity > report.layers[0].specificity
    for k in range(4):
        np.testing.assert_allclose(
            report.layers[1].class_means[k].numpy(), gates[y == k].mean(axis=0), rtol=1e-5
        )
    spread = np.sqrt(
        sum((y == k).mean() * (gates[y == k, 0].mean() - gates[:, 0].mean()) ** 2 for k in range(4))
    )
    assert float(
        between_class_spread(report.layers[1].class_means.double() * 100, torch.full((4,), 100.0))[0]
    ) == (pytest.approx(spread, rel=1e-5))
    assert report.samples == 400 and report.to_dict()["layers"][1]["channels"] == 3


def test_correlation_ratio_extremes():
    # Two classes, each with a constant gate value per class: between = total, eta² = 1.
    sums = torch.tensor([[10 * 0.2], [10 * 0.8]])
    squares = torch.tensor([10 * 0.04 + 10 * 0.64])
    assert float(correlation_ratio(sums, torch.tensor([10.0, 10.0]), squares)[0]) == pytest.approx(1.0)


def test_records_real_se_gates_through_the_tap():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 8, 3, padding=1)
    se = excite.create("se", 8, reduction=2)
    model = nn.Sequential(conv, nn.ReLU(), se)
    images = torch.randn(30, 1, 6, 6)
    labels = torch.arange(30) % 3
    images[labels == 1] += 1.0
    report = excitations(model, [(images[:16], labels[:16]), (images[16:], labels[16:])], num_classes=3)
    assert [layer.name for layer in report.layers] == ["2"]
    with torch.no_grad():
        gates = se.excitation(spatial_mean(torch.relu(conv(images))))
    for k in range(3):
        torch.testing.assert_close(
            report.layers[0].class_means[k], gates[labels == k].mean(dim=0), rtol=1e-5, atol=1e-6
        )
    assert model.training, "the model's mode is restored"


def test_resnet_layers_in_depth_order_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    model = excite.models.resnet18(attention="eca", in_channels=1, num_classes=4, stem="small", width=4)
    taps = gate_taps(model)
    assert [name for name, _ in taps][:3] == [
        "layer1.0.attention",
        "layer1.1.attention",
        "layer2.0.attention",
    ]
    images, labels = torch.randn(12, 1, 28, 28), torch.arange(12) % 4
    report = excitations(model, [(images, labels)], classes=["a", "b", "c", "d"])
    assert len(report.layers) == 8
    path = report.plot(tmp_path / "excitations.png", title="test")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_without_channel_gate_is_refused():
    with pytest.raises(ValueError, match="no GateTap"):
        excitations(nn.Sequential(excite.create("simam")), [(torch.randn(2, 3, 4, 4), torch.tensor([0, 1]))])
