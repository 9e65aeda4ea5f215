"""The torch device as a resource: CUDA when present (or asked for), else the CPU.

GPU-heavy assets declare ``pool="gpu"`` so at most the pool's limit of them (1 by default, see
``dagster_home/dagster.yaml``) hold the GPU at once; on a machine without a GPU the same assets
run on the CPU.
"""

from typing import Literal

import dagster as dg
from pydantic import Field


class TorchDeviceResource(dg.ConfigurableResource):
    """Where models train and infer."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: cuda when available, else cpu."
    )
    cpu_threads: int = Field(default=0, description="torch CPU threads; 0 keeps torch's default.")

    def resolve(self) -> str:
        """The torch device string to use: ``"cuda"`` or ``"cpu"``. Asking for ``cuda`` on a
        machine without one falls back to the CPU with a warning in the asset's log."""
        import torch

        if self.cpu_threads > 0:
            torch.set_num_threads(self.cpu_threads)
        if self.device == "cpu":
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
