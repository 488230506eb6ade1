"""Augmentation recipes: the paper's Re-ID recipe (``lup``) and the original MoCo v2 (``mocov2``).

§4.2 and Tables 2-4: ``lup`` removes colour jitter, adds RandomErasing up to area 0.6 and uses
tau 0.07; ``mocov2`` keeps colour jitter, no erasing, tau 0.2. Each factor has its own switch in
``PretrainSettings`` that overrides the preset.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.normalisation import IMAGENET_MEAN, IMAGENET_STD, LUP_MEAN, LUP_STD, NAMED, PRESET_NORMALISATION

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LUP_MEAN", "LUP_STD", "Recipe", "recipe_from_settings"]


@dataclass(frozen=True)
class Recipe:
    """Every random augmentation's parameters, in the order they are applied."""

    height: int
    width: int
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter_p: float = 0.0  # ColorJitter(0.4, 0.4, 0.4, 0.1) applied with this probability
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    flip_p: float = 0.5
    erasing_p: float = 0.0
    erasing_area: tuple[float, float] = (0.02, 0.6)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    mean: tuple[float, float, float] = LUP_MEAN
    std: tuple[float, float, float] = LUP_STD

    @property
    def blur_kernel(self) -> int:
        """Odd kernel covering +-3 sigma of the largest sigma (13 for sigma 2), for any image size."""
        return 2 * int(-(-3 * self.blur_sigma[1] // 1)) + 1

    @property
    def smallest_side(self) -> int:
        """The least height and width (7): the blur pads each side by half its kernel, reflecting,
        which needs a longer side; the batched path blurs every image (an identity kernel when
        the blur is not drawn), so this holds with ``--no-blur`` too."""
        return self.blur_kernel // 2 + 1


def recipe_from_settings(cfg) -> tuple[Recipe, float]:
    """(Recipe, temperature) of ``cfg.preset`` with the per-factor switches applied."""
    lup = cfg.preset == "lup"

    def pick(switch: bool | None, default: bool) -> bool:
        return default if switch is None else switch

    jitter = pick(cfg.color_jitter, not lup)
    erasing = pick(cfg.random_erasing, lup)
    recipe = Recipe(
        height=cfg.height,
        width=cfg.width,
        jitter_p=0.8 if jitter else 0.0,
        grayscale_p=0.2 if pick(cfg.grayscale, True) else 0.0,
        blur_p=0.5 if pick(cfg.blur, True) else 0.0,
        erasing_p=0.5 if erasing else 0.0,
        erasing_area=(0.02, cfg.erasing_max_area),
        mean=NAMED[PRESET_NORMALISATION[cfg.preset]][0],
        std=NAMED[PRESET_NORMALISATION[cfg.preset]][1],
    )
    temperature = cfg.temperature if cfg.temperature is not None else (0.07 if lup else 0.2)
    return recipe, temperature
