"""``--init imagenet``: torchvision's ImageNet-supervised weights, the paper's Table 5 baseline.

Loaded through torchvision's weight API (``get_model_weights(arch).IMAGENET1K_V1``, the
weights of the paper's time; torchvision downloads them on first use into
``$TORCH_HOME/hub/checkpoints``). Offline and not cached, the command ends with one line naming
the file torchvision looks for and where to put it. They were trained on inputs normalised with
ImageNet's mean/std, so fine-tuning and evaluation use those.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path

import torch
import torchvision

from common.errors import UsageError
from common.normalisation import Normalisation, named

NAME = "imagenet"
VERSION = "IMAGENET1K_V1"


def imagenet_weights(arch: str):
    """torchvision's ``WeightsEnum`` member for ``arch``; ``UsageError`` when it has none."""
    try:
        return getattr(torchvision.models.get_model_weights(arch), VERSION)
    except (ValueError, KeyError, AttributeError):
        raise UsageError(f"init imagenet: torchvision has no {VERSION} weights for '{arch}'") from None


def cached_file(arch: str) -> Path:
    """Where torchvision looks for (and downloads) the weights of ``arch``."""
    url = imagenet_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """The state dict, through ``WeightsEnum.get_state_dict`` (tensors only, ``weights_only=True``)."""
    weights = imagenet_weights(arch)
    try:
        return weights.get_state_dict(progress=False, weights_only=True)
    except (urllib.error.URLError, OSError) as e:
        where = cached_file(arch)
        raise UsageError(
            f"init imagenet: {where.name} is not in {where.parent} and cannot be downloaded "
            f"({type(e).__name__}): fetch {weights.url} on a connected machine and put it there "
            "(or set TORCH_HOME)"
        ) from None
    except (RuntimeError, pickle.UnpicklingError, EOFError) as e:  # a damaged or foreign file there
        raise UsageError(f"init imagenet: {cached_file(arch)} does not load ({one_line(e)})") from None


def imagenet_normalisation() -> Normalisation:
    return named("imagenet", "torchvision ImageNet weights")


def one_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
