"""Where the factor model is fitted: implicit's CUDA build on a GPU when one is usable, else the
CPU. Either way the factors come back as float32 numpy arrays, so the artifact is the same."""

from __future__ import annotations

from typing import Literal

Device = Literal["auto", "cpu", "gpu"]
Resolved = Literal["cpu", "gpu"]


def cuda_available() -> bool:
    """True when implicit was built with CUDA and sees at least one device.

    ``implicit.gpu.HAS_CUDA`` is set only after its extension imported and counted the devices,
    so a CUDA build on a machine without a GPU reports False too.
    """
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def resolve_device(requested: Device) -> Resolved:
    """``auto`` picks the GPU when there is one; ``gpu`` without one is an error, not a fallback."""
    if requested == "cpu":
        return "cpu"
    if cuda_available():
        return "gpu"
    if requested == "gpu":
        raise ValueError(
            "device gpu: implicit has no usable CUDA device here (implicit.gpu.HAS_CUDA is "
            "false: no GPU, or implicit installed without its CUDA extension, e.g. from "
            "conda-forge's implicit-proc=*=gpu); use --device auto or cpu"
        )
    return "cpu"
