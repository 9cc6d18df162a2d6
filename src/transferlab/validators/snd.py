"""Soft Neighbourhood Density (Saito et al., ICCV 2021)."""

from __future__ import annotations

from torch.nn import functional as F

from transferlab.utils.log import log
from transferlab.validators.base import ValidationOutputs, Validator, entropy


class SoftNeighborhoodDensity(Validator):
    """SND = (1/N)·Σ_i H(softmax_j≠i(cos(p_i, p_j) / τ)): for each target image, the entropy of
    its similarity distribution over the other target images, p the softmax predictions
    (τ = 0.05, the paper's). Dense neighbourhoods (images close to many others) score higher.

    The similarity matrix is N×N: at most ``max_images`` target images are used (the first ones
    of the validation split), and the cap is stated in the log when it applies.
    """

    def __init__(self, temperature: float = 0.05, max_images: int = 2048) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (SND's is 0.05)")
        if max_images < 2:
            raise ValueError(f"max_images={max_images} must be >= 2")
        self.temperature = temperature
        self.max_images = max_images
        self._told = False

    def score(self, outputs: ValidationOutputs) -> float:
        p = outputs.target_logits.float().softmax(dim=1)
        if p.shape[0] > self.max_images:
            if not self._told:
                log.info(
                    "SND: %d target validation images, scored on the first %d (max_images)",
                    p.shape[0],
                    self.max_images,
                )
                self._told = True
            p = p[: self.max_images]
        unit = F.normalize(p, dim=1)
        similarity = unit @ unit.T / self.temperature
        similarity.fill_diagonal_(float("-inf"))  # an image is not its own neighbour
        return entropy(similarity.softmax(dim=1)).mean().item()
