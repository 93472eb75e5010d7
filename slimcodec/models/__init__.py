"""Model architectures (torch and compressai only; inference code never imports this package).

``ARCHITECTURES`` maps the name a weights file records to the class that builds it.
"""

from __future__ import annotations

from slimcodec.models.factorized import SlimCAE
from slimcodec.models.hyperprior import SlimCAEHyperprior

ARCHITECTURES: dict[str, type] = {
    "slimcae-factorized": SlimCAE,
    "slimcae-hyperprior": SlimCAEHyperprior,
}


def architecture_of(model) -> str:
    """The registry name of ``model``'s class."""
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise KeyError(f"{type(model).__name__} is not a registered architecture")
