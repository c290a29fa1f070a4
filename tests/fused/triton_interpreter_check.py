"""Run by ``test_fused_triton.py`` in a subprocess with ``TRITON_INTERPRET=1`` (which must be set before
Triton is imported): every module's fused path with the Triton kernels pinned, on CPU tensors that
Triton's interpreter executes, against the reference path, with the criterion of
``test_fused_equivalence.py`` (error against the float64 reference within twice the reference's own
error plus 16 units of roundoff). Prints one line per failure and ``OK <count>`` at the end.

On a CUDA machine, ``python tests/fused/triton_interpreter_check.py --device cuda`` runs the same cases
through the compiled kernels on the GPU (no interpreter), against the reference path on the same GPU
and the float64 reference on the CPU (``scripts/gpu_check.sh`` does this first).
"""

from __future__ import annotations

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import conftest  # noqa: E402,F401  (registers excite_test_helpers)
from test_fused_equivalence import assert_as_accurate, run  # noqa: E402

from excite.fused import _triton, forced_backend  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
    if device == "cpu":
        assert os.environ.get("TRITON_INTERPRET") == "1", "set TRITON_INTERPRET=1 before importing triton"
    elif not torch.cuda.is_available():
        print(f"SKIP --device {device}: CUDA is not available")
        return 0
    if _triton.load() is None:
        print("SKIP triton is not installed")
        return 0
    cases = [(name, dim, torch.float32, layout) for name in conftest.FOUNDATION_NAMES for dim in (1, 2, 3)
             for layout in ("contiguous", "channels_last")]  # fmt: skip
    cases += [(name, 2, dtype, "channels_last") for name in conftest.FOUNDATION_NAMES
              for dtype in (torch.bfloat16, torch.float16, torch.float64)]  # fmt: skip
    failures = 0
    for name, dim, dtype, layout in cases:
        truth = run(name, dim, torch.float64, layout, reference=True)
        ref = run(name, dim, dtype, layout, reference=True, device=device)
        with forced_backend("triton"):
            fused = run(name, dim, dtype, layout, reference=False, device=device)
        try:
            assert_as_accurate(name, fused, ref, truth, dtype)
        except AssertionError as error:
            failures += 1
            print(f"FAIL {name} dim={dim} {dtype} {layout}: {error}")
    print(f"OK {len(cases) - failures} of {len(cases)} on {device}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
