"""Model architectures (torch and compressai only; inference code never imports this package).

``slimcodec.models.layers`` holds the width-sliced torch layers, ``factorized``,
``hyperprior`` and ``channel`` the models. ``ARCHITECTURES`` maps the name a weights file records to the
class that builds it, as the registry of :mod:`slimcodec.latents` says (each latent
codec's ``model_class``).
"""

from __future__ import annotations

from slimcodec import latents

ARCHITECTURES: dict[str, type] = {name: arch.codec.model_class() for name, arch in latents.ARCHITECTURES.items()}


def architecture_of(model) -> str:
    """The registry name of ``model``'s class."""
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise KeyError(f"{type(model).__name__} is not a registered architecture")
