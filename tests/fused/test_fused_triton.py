"""The Triton kernels, run by Triton's CPU interpreter (no GPU needed).

``TRITON_INTERPRET=1`` must be set before Triton is imported, so the check runs in a subprocess
(``triton_interpreter_check.py``): every module, dims 1-3, both layouts in fp32, and bf16, fp16 and fp64
in 2-D, against the reference path. This verifies the kernels' arithmetic, masking and indexing; it
says nothing about their speed or about compiling them for a GPU, which only a CUDA machine can show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")


def test_triton_kernels_match_reference_under_the_interpreter() -> None:
    script = Path(__file__).with_name("triton_interpreter_check.py")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    report = done.stdout.strip().splitlines()
    if report and report[-1].startswith("SKIP"):
        pytest.skip(report[-1])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert report[-1].startswith("OK"), done.stdout[-2000:]
