"""The device a rank computes on, chosen by the config and never silently the CPU, and the dtypes by name.

Imports torch only.
"""

from __future__ import annotations

import ctypes
import os

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class DeviceError(RuntimeError):
    """The configured device cannot be used; the message says why and what to change."""


def resolve_device(setting: str, local_rank: int) -> torch.device:
    """The device of the rank with `local_rank` under `setting`.

    Raises:
        DeviceError: for `cuda` without a usable GPU for this rank, naming the driver's CUDA version and the one
            this environment's torch is built for.
    """
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DeviceError(f"local rank {local_rank} needs GPU {local_rank}, but only {count} are visible "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): start at "
                              "most one rank per GPU (--nproc-per-node)")
        return torch.device("cuda", local_rank)
    if setting == "auto":
        return torch.device("cpu")
    raise DeviceError(
        f"distributed.device is cuda, but this environment's torch cannot use a GPU: {cuda_problem()}. The run "
        "stopped before loading any model. Install a torch built for this driver (the stage's env.torch_index, "
        "e.g. https://download.pytorch.org/whl/cu126, or env.python of an interpreter that has one), or set "
        "distributed.device: cpu to run on the CPU on purpose.")


def cuda_problem() -> str:
    """Why CUDA is unusable: the NVIDIA driver's CUDA version (asked of libcuda) beside the wheel's."""
    wheel = (f"torch {torch.__version__} is built for CUDA {torch.version.cuda}" if torch.version.cuda
             else f"torch {torch.__version__} is a CPU-only build")
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return f"no NVIDIA driver was found (libcuda.so.1 cannot be loaded); {wheel}"
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return f"the NVIDIA driver does not answer (cuDriverGetVersion failed); {wheel}"
    driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    if torch.version.cuda and tuple(map(int, torch.version.cuda.split("."))) > (version.value // 1000,
                                                                                version.value % 1000 // 10):
        return f"the NVIDIA driver supports CUDA up to {driver}, but {wheel}"
    return f"the NVIDIA driver supports CUDA {driver} and {wheel}, yet no GPU is visible " \
           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
