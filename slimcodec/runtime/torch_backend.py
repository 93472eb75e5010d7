"""The torch backend: a model's stages run by PyTorch itself."""

from __future__ import annotations

import numpy as np

from slimcodec import runtime


class TorchTransforms:
    """Stages of a torch model (``SlimCAE`` or an architecture built on it)."""

    name = "torch"

    def __init__(self, model, stages: dict | None = None) -> None:
        """``stages`` maps each stage to its function of the model (the architecture's latent codec's
        ``torch_stages``; by default looked up in :mod:`slimcodec.latents`)."""
        if stages is None:
            from slimcodec.latents import codec_of
            from slimcodec.models import architecture_of

            stages = codec_of(architecture_of(model)).torch_stages(model)
        self.model = model
        self.stages = stages

    def run(self, stage: str, width: int, x: np.ndarray) -> np.ndarray:
        import torch

        if (n := runtime.threads()) is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)
        t = torch.from_numpy(np.asarray(x, dtype=np.float32))[None]  # strides kept: a channels-last view stays one
        if stage in ("analysis", "synthesis"):  # the big stages run fastest channels-last
            t = t.contiguous(memory_format=torch.channels_last)
        fn = self.stages.get(stage)
        if fn is None:
            raise ValueError(f"this model has no stage {stage!r}")
        with torch.no_grad():
            return fn(t, width)[0].float().numpy()

    def release(self, stage: str, width: int) -> None:
        """Nothing: torch keeps no buffers between runs on the CPU."""
