"""The torch backend: a model's stages run by PyTorch itself."""

from __future__ import annotations

import numpy as np

from slimcodec import runtime


class TorchTransforms:
    """Stages of a torch model (``SlimCAE`` or an architecture built on it)."""

    name = "torch"

    def __init__(self, model) -> None:
        self.model = model

    def run(self, stage: str, width: int, x: np.ndarray) -> np.ndarray:
        import torch

        if (n := runtime.threads()) is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)
        t = torch.from_numpy(np.asarray(x, dtype=np.float32))[None]  # strides kept: a channels-last view stays one
        if stage in ("analysis", "synthesis"):  # the big stages run fastest channels-last
            t = t.contiguous(memory_format=torch.channels_last)
        fn = {
            "analysis": self.model.analysis,
            "synthesis": self.model.synthesis,
            "hyper_analysis": getattr(self.model, "hyper_analysis", None),
            "hyper_mean": getattr(self.model, "h_s_mean", None),
        }.get(stage)
        if fn is None:
            raise ValueError(f"this model has no stage {stage!r}")
        with torch.no_grad():
            return fn(t, width)[0].float().numpy()
