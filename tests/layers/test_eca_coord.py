"""ECACoord (``eca_coord``): the fused formula transcribed in numpy, the serial composition, deployment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import excite
from excite.layers.eca_coord import DirectionalECA, ECACoord

SIZES = {1: (9,), 2: (5, 7), 3: (3, 4, 5)}


def psi(channels: int) -> int:
    """ECA's k = |log2(C)/2 + 1/2|_odd, written from the paper's formula (ties of even t round up)."""
    t = int(abs((math.log2(channels) + 1) / 2))
    return t if t % 2 == 1 else t + 1


def reference_fused(x: np.ndarray, kernels: list) -> np.ndarray:
    """y = x · Π_a σ(Σ_j w^a_j z^a_{c+j-half}) with z^a the mean over every spatial axis but a."""
    batch, channels = x.shape[:2]
    dim = x.ndim - 2
    out = x.copy()
    for axis in reversed(range(dim)):
        others = tuple(2 + o for o in range(dim) if o != axis)
        strip = x.mean(axis=others) if others else x
        kernel = kernels[axis]
        half = len(kernel) // 2
        padded = np.pad(strip, ((0, 0), (half, half), (0, 0)))
        logits = sum(kernel[j] * padded[:, j : j + channels, :] for j in range(len(kernel)))
        gate = 1.0 / (1.0 + np.exp(-logits))
        shape = [batch, channels] + [strip.shape[2] if o == axis else 1 for o in range(dim)]
        out = out * gate.reshape(shape)
    return out


def kernels_of(module: ECACoord) -> list:
    return [conv.weight.detach().double().reshape(-1).numpy() for conv in module.directional.convs]


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_fused_matches_transcribed_formula(dim: int) -> None:
    torch.manual_seed(dim)
    module = excite.create("eca_coord", 32, dim=dim).double()
    for conv in module.directional.convs:
        torch.nn.init.normal_(conv.weight, std=1.0)
    x = torch.randn(2, 32, *SIZES[dim], dtype=torch.float64)
    expected = reference_fused(x.numpy(), kernels_of(module))
    np.testing.assert_allclose(module(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [16, 64, 256, 2048])
def test_kernel_size_follows_psi_and_parameter_count(channels: int) -> None:
    module = ECACoord(channels, dim=2)
    assert module.kernel_size == psi(channels)
    assert sum(p.numel() for p in module.parameters()) == 2 * psi(channels)
    assert sum(p.numel() for p in ECACoord(channels, dim=3).parameters()) == 3 * psi(channels)


def test_channel_conv_is_eca_at_every_strip_position() -> None:
    """Each position of a strip gets exactly ECA's excitation of that column of channels."""
    torch.manual_seed(0)
    eca = excite.create("eca", 64, dim=1)
    directional = DirectionalECA(64, dim=1, kernel_size=eca.kernel_size)
    directional.convs[0].weight.data.copy_(eca.conv.weight.data)
    strip = torch.randn(3, 64, 6)
    gates = directional.axis_gates(strip)[0]
    for position in range(6):
        torch.testing.assert_close(gates[:, :, position], eca.excitation(strip[:, :, position]))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_serial_is_coordinate_attention_after_eca(dim: int) -> None:
    torch.manual_seed(1)
    module = ECACoord(32, dim=dim, variant="serial", reduction=8, norm="layer").eval()
    eca = excite.create("eca", 32, dim=dim, kernel_size=module.kernel_size)
    coord = excite.create("coord", 32, dim=dim, reduction=8, norm="layer")
    eca.load_state_dict(module.channel.state_dict())
    coord.load_state_dict(module.directional.state_dict())
    x = torch.randn(2, 32, *SIZES[dim])
    torch.testing.assert_close(module(x), coord(eca(x)))
    expected_params = module.kernel_size + sum(p.numel() for p in coord.parameters())
    assert sum(p.numel() for p in module.parameters()) == expected_params


def test_gradients_match_the_transcribed_formula() -> None:
    torch.manual_seed(2)
    module = ECACoord(16, dim=2, kernel_size=5).double()
    x = torch.randn(2, 16, 4, 6, dtype=torch.float64, requires_grad=True)
    weights = [conv.weight for conv in module.directional.convs]

    def by_formula(inp: torch.Tensor) -> torch.Tensor:
        strip_h, strip_w = inp.mean(dim=3), inp.mean(dim=2)
        gates = []
        for strip, weight in ((strip_h, weights[0]), (strip_w, weights[1])):
            kernel = weight.reshape(-1)
            padded = torch.nn.functional.pad(strip, (0, 0, 2, 2))
            gates.append(torch.sigmoid(sum(kernel[j] * padded[:, j : j + 16, :] for j in range(5))))
        return inp * gates[1].unsqueeze(2) * gates[0].unsqueeze(3)

    upstream = torch.randn(2, 16, 4, 6, dtype=torch.float64)
    ours = torch.autograd.grad((module(x) * upstream).sum(), [x, *weights])
    theirs = torch.autograd.grad((by_formula(x) * upstream).sum(), [x, *weights])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_half_precision_accumulates_strips_in_fp32() -> None:
    x = torch.full((1, 16, 64, 64), 300.0, dtype=torch.float16)
    module = ECACoord(16, dim=2).half()
    assert torch.isfinite(module(x)).all()


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="variant must be one of"):
        ECACoord(16, variant="parallel")
    with pytest.raises(ValueError, match="apply only to variant='serial'"):
        ECACoord(16, reduction=8)
    with pytest.raises(ValueError, match="positive odd integer"):
        ECACoord(16, kernel_size=4)
    with pytest.raises(ValueError, match="channels is required"):
        ECACoord(None)
    with pytest.raises(ValueError, match="built for 16 channels"):
        ECACoord(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="expected a 4-D input"):
        ECACoord(16)(torch.randn(1, 16, 4))
    with pytest.raises(ValueError, match="has no option"):
        excite.create("eca_coord", 16, reduciton=4)


@pytest.mark.parametrize("variant", ["fused", "serial"])
def test_torchscript_matches_eager(variant: str) -> None:
    module = ECACoord(32, dim=2, variant=variant).eval()
    scripted = torch.jit.script(module)
    x = torch.randn(2, 32, 6, 9)
    torch.testing.assert_close(scripted(x), module(x))


def test_torch_compile_fullgraph_dynamic() -> None:
    module = ECACoord(16, dim=2).eval()
    compiled = torch.compile(module, fullgraph=True, dynamic=True)
    for size in [(5, 7), (8, 3)]:
        x = torch.randn(2, 16, *size)
        torch.testing.assert_close(compiled(x), module(x))


@pytest.mark.parametrize("dim", [2, 3])
def test_onnx_export_runs_at_a_new_size(tmp_path, dim: int) -> None:
    """The legacy TorchScript-based exporter with dynamic axes."""
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    module = ECACoord(16, dim=dim).eval()
    spatial = ["d", "h", "w"][-dim:]
    path = tmp_path / "eca_coord.onnx"
    example = torch.randn(1, 16, *([6] * dim))
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n", **{i + 2: s for i, s in enumerate(spatial)}}, "y": {0: "n"}},
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    new = torch.randn(3, 16, *([4, 9, 5][-dim:]))
    (got,) = session.run(None, {"x": new.numpy()})
    np.testing.assert_allclose(got, module(new).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_onnx_dynamo_export_runs_at_a_new_size(tmp_path) -> None:
    """The torch.export-based exporter (the default since PyTorch 2.9) with dynamic H and W."""
    pytest.importorskip("onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime")
    module = ECACoord(16, dim=2).eval()
    height = torch.export.Dim("height", min=2, max=1024)
    width = torch.export.Dim("width", min=2, max=1024)
    program = torch.onnx.export(
        module, (torch.randn(2, 16, 6, 6),), dynamo=True, dynamic_shapes=({2: height, 3: width},)
    )
    path = tmp_path / "eca_coord_dynamo.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    new = torch.randn(2, 16, 11, 4)
    (got,) = session.run(None, {session.get_inputs()[0].name: new.numpy()})
    np.testing.assert_allclose(got, module(new).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_fused_path_matches_the_reference_path(dim: int) -> None:
    """The default (fused Coordinate-Attention kernels) and ``use_reference`` agree in value and gradient."""
    torch.manual_seed(3)
    module = ECACoord(16, dim=dim)
    for conv in module.directional.convs:
        torch.nn.init.normal_(conv.weight, std=1.0)
    x = torch.randn(2, 16, *SIZES[dim], requires_grad=True)
    upstream = torch.randn(2, 16, *SIZES[dim])
    fused_out = module(x)
    fused_grads = torch.autograd.grad((fused_out * upstream).sum(), [x, *module.parameters()])
    with excite.use_reference():
        reference_out = module(x)
        reference_grads = torch.autograd.grad((reference_out * upstream).sum(), [x, *module.parameters()])
    torch.testing.assert_close(fused_out, reference_out, rtol=1e-5, atol=1e-6)
    for fused_grad, reference_grad in zip(fused_grads, reference_grads):
        torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-4, atol=1e-5)
