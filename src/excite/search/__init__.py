"""Search over the SE family: which module goes where, and which DCT frequencies FcaNet should use.

    >>> import functools, excite
    >>> model_fn = functools.partial(
    ...     excite.models.resnet18, stem="small", width=16, in_channels=1, num_classes=10
    ... )
    >>> result = excite.search.attention(model_fn, train_loader, val_loader, ["none", "se", "eca", "coord"])
    >>> result.choices                      # {"layer1.0....": "eca", ...}
    >>> derived = result.build(model_fn)    # the discrete network, fresh weights
    >>> freq = excite.search.frequencies(model_fn, train_loader, val_loader, k=16)
    >>> freq.frequencies                    # per FCA layer, the selected absolute (u, v) indices

Both searches are first-order DARTS (Liu, Simonyan, Yang, ICLR 2019): architecture logits trained on a
validation split, alternating with the weights on the training split. Both write a markdown report,
a JSON record and a figure; :func:`study_section` runs the comparisons the study reports.
"""

from .attention_search import SearchResult, Slot, attention, derive, via_attach
from .costs import COSTS, candidate_costs, slot_input_shapes
from .frequency import FrequencySearchFCA, FrequencySearchResult, candidate_grid, frequencies
from .mixed import (
    DEFAULT_CANDIDATES,
    MixedAttention,
    architecture_parameters,
    choice_factory,
    find_slots,
    mixture_factory,
    uniform_factory,
    weight_parameters,
)
from .study import study_section
from .training import Accuracy, MeanDice

__all__ = [
    "COSTS",
    "DEFAULT_CANDIDATES",
    "Accuracy",
    "FrequencySearchFCA",
    "FrequencySearchResult",
    "MeanDice",
    "MixedAttention",
    "SearchResult",
    "Slot",
    "architecture_parameters",
    "attention",
    "candidate_costs",
    "candidate_grid",
    "choice_factory",
    "derive",
    "find_slots",
    "frequencies",
    "mixture_factory",
    "slot_input_shapes",
    "study_section",
    "uniform_factory",
    "via_attach",
    "weight_parameters",
]
