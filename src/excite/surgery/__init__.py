"""Attention surgery on existing networks: :func:`attach` inserts, :func:`replace` swaps.

    >>> import torchvision, excite
    >>> model = torchvision.models.resnet50()
    >>> report = excite.attach(model, "eca", init="identity")   # output unchanged until fine-tuning
    >>> print(report)                                            # sites, mechanisms, new keys
    >>> report.load_pretrained(pretrained_state_dict)            # exactly report.new_keys missing

    >>> import timm
    >>> senet = timm.create_model("seresnet50")
    >>> excite.replace(senet, "se", "fca")                       # FcaNet-50: 28,071,976 parameters

Placement rules per block type: :mod:`excite.surgery.sites`. Identity initialisation per module:
:mod:`excite.surgery.identity`.
"""

from .attach import attach
from .identity import ResidualScale, identity_init
from .replace import family_matcher, replace
from .report import SurgeryPoint, SurgeryReport
from .sites import PLACEMENTS

__all__ = [
    "PLACEMENTS",
    "ResidualScale",
    "SurgeryPoint",
    "SurgeryReport",
    "attach",
    "family_matcher",
    "identity_init",
    "replace",
]
