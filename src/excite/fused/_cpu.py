"""The C++/OpenMP CPU kernels: built once on first use with ``torch.utils.cpp_extension`` and cached.

The source is ``csrc/fused_cpu.cpp`` inside this package. It is compiled for the machine it runs on
(``-march=native``), so the cache name carries a hash of the source, the torch version and the CPU's
model and flags: a home directory shared between different machines never loads a foreign build.
The build directory is torch's (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), whose
file lock also keeps two processes (pytest-xdist workers) from compiling at the same time.

When no compiler or ninja is available, or ``EXCITE_FUSED_CPP=0`` is set, :func:`load` returns None
and the fused functions use the torch-op kernels in :mod:`excite.fused._torch_ops` instead.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("csrc") / "fused_cpu.cpp"

_lock = threading.Lock()
_module: Any | None = None
_failure: str | None = None


def _cpu_signature() -> str:
    """Model name and feature flags of this CPU (what ``-march=native`` compiles for)."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "Features", "CPU part"):
                    parts.append(line.strip())
                if line.strip() == "":
                    break  # the first processor describes them all
    except OSError:
        pass
    return "\n".join(parts)


def build_name() -> str:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(_cpu_signature().encode())
    return f"excite_fused_cpu_{digest.hexdigest()[:16]}"


def _import_cpp_extension() -> Any:
    """``torch.utils.cpp_extension``, imported without its "No CUDA runtime is found" warning.

    A CUDA build of torch on a machine without a GPU logs that warning when the module is first imported
    (it looks for CUDA_HOME at import time). These kernels are plain C++ and never use CUDA, so on every
    CPU-only machine it would be noise on the first fused call of every process.
    """
    import logging

    logger = logging.getLogger("torch.utils.cpp_extension")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(previous)
    return cpp_extension


def failure() -> str | None:
    """Why the extension is not in use, or None if it is (or has not been tried yet)."""
    return _failure


def load() -> Any | None:
    """The compiled kernels as ``torch.ops.excite_fused``, built on the first call; None where they
    cannot be built."""
    global _module, _failure
    if _module is not None or _failure is not None:
        return _module
    with _lock:
        if _module is not None or _failure is not None:
            return _module
        if os.environ.get("EXCITE_FUSED_CPP", "1") == "0":
            _failure = "disabled by EXCITE_FUSED_CPP=0"
            return None
        try:
            cpp_extension = _import_cpp_extension()
            cpp_extension.verify_ninja_availability()
            flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
            machine = platform.machine().lower()
            if machine in ("x86_64", "amd64", "aarch64", "arm64"):
                flags.append("-march=native")
            if machine in ("x86_64", "amd64"):
                # AVX-512 machines default to 256-bit vectors; SimAM's sigmoid is compute-bound.
                flags.append("-mprefer-vector-width=512")
            cpp_extension.load(
                name=build_name(),
                sources=[str(SOURCE)],
                extra_cflags=flags,
                extra_ldflags=["-fopenmp"],
                is_python_module=False,
                verbose=os.environ.get("EXCITE_FUSED_VERBOSE", "0") == "1",
            )
            _module = torch.ops.excite_fused
        except Exception as error:  # no compiler, no ninja, a failed build: the torch-op path still works
            _failure = (
                f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            )
            warnings.warn(
                f"excite.fused: C++ CPU kernels unavailable ({_failure}); using the slower torch-op kernels",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    return _module
