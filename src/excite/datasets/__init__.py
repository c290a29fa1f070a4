"""Real, offline data sets: where they are, and how to install them.

Both come from Debian packages, which CI installs:

* ``dataset-fashion-mnist``: the Fashion-MNIST IDX files in ``/usr/share/datasets/fashion-mnist``.
* ``mricron-data``: the Colin27 T1 brain MRI (``ch2.nii.gz``, ``ch2better.nii.gz``) and atlases in MNI
  space (``aal``, ``brodmann``, ``HarvardOxford-cort-maxprob-thr0-1mm``) in ``/usr/share/mricron/templates``.

Every loader also takes a user path. The search order is: the explicit path, then the environment
variable (``EXCITE_FASHION_MNIST``, ``EXCITE_BRAIN_MRI``), then the Debian location.

Loaders: :func:`load_fashion_mnist` (IDX parsing, fixed validation split) and :func:`load_brain_mri`
(NIfTI via nibabel, grid check and resampling, label sets, slab splits).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataSource:
    name: str
    debian_package: str
    default_dir: str
    env_var: str
    required_files: Sequence[str]
    how_to_get: str

    def find(self, path: os.PathLike | None = None) -> Path | None:
        """The first candidate folder that holds every required file, or None."""
        candidates = [path, os.environ.get(self.env_var), self.default_dir]
        for candidate in candidates:
            if candidate and all((Path(candidate) / f).exists() for f in self.required_files):
                return Path(candidate)
        return None

    def locate(self, path: os.PathLike | None = None) -> Path:
        """Like :meth:`find`, but raises FileNotFoundError with instructions."""
        found = self.find(path)
        if found is None:
            where = f"{path} (given), " if path else ""
            raise FileNotFoundError(
                f"{self.name} not found in {where}${self.env_var}, or {self.default_dir}. "
                f"Needed files: {', '.join(self.required_files)}.\n{self.how_to_get}"
            )
        return found


FASHION_MNIST = DataSource(
    name="Fashion-MNIST",
    debian_package="dataset-fashion-mnist",
    default_dir="/usr/share/datasets/fashion-mnist",
    env_var="EXCITE_FASHION_MNIST",
    required_files=(
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ),
    how_to_get=(
        "On Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist. Elsewhere: download the four "
        "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist and pass --data DIR "
        "(or set EXCITE_FASHION_MNIST=DIR)."
    ),
)

BRAIN_MRI = DataSource(
    name="Colin27 brain MRI and atlases",
    debian_package="mricron-data",
    default_dir="/usr/share/mricron/templates",
    env_var="EXCITE_BRAIN_MRI",
    required_files=("ch2.nii.gz", "aal.nii.gz"),
    how_to_get=(
        "On Debian/Ubuntu: sudo apt-get install mricron-data. Elsewhere: take ch2.nii.gz, "
        "ch2better.nii.gz, aal.nii.gz (and optionally brodmann.nii.gz, "
        "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz) from MRIcron's templates folder and pass "
        "--data DIR (or set EXCITE_BRAIN_MRI=DIR)."
    ),
)

SOURCES = (FASHION_MNIST, BRAIN_MRI)


def install_debian_packages(sources: Sequence[DataSource] = SOURCES, quiet: bool = True) -> bool:
    """Install the missing data packages with apt-get, where that is possible (root on Debian).

    Returns True when every source is present afterwards. Prints what it does; never raises.
    """
    missing = [s for s in sources if s.find() is None]
    if not missing:
        return True
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        for source in missing:
            print(f"excite: {source.name} is missing and apt-get is not usable here.\n  {source.how_to_get}")
        return False
    packages = [s.debian_package for s in missing]
    print(f"excite: installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    out = subprocess.DEVNULL if quiet else None
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=out)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=out)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"excite: apt-get failed ({error}); install {' '.join(packages)} by hand")
        return False
    return all(s.find() is not None for s in sources)


from .brain_mri import BrainMRI, axial_slabs, load_brain_mri  # noqa: E402
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES  # noqa: E402
from .fashion_mnist import FashionMNIST, load_fashion_mnist, read_idx  # noqa: E402

__all__ = [
    "BRAIN_MRI",
    "FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "SOURCES",
    "BrainMRI",
    "DataSource",
    "FashionMNIST",
    "axial_slabs",
    "install_debian_packages",
    "load_brain_mri",
    "load_fashion_mnist",
    "read_idx",
]
