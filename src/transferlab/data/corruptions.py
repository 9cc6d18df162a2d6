"""The 15 corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) at their CIFAR parameters.

Each function takes a 32×32 RGB image (uint8, H×W×3) and a severity 1–5 and returns the
corrupted image as floats in [0, 255] (the caller truncates to uint8, as the authors' script
does). The parameters are those of the authors' ``ImageNet-C/create_c/make_cifar_c.py``
(hendrycks/robustness): they differ from the ImageNet-C ones the ``imagecorruptions`` package
applies, so its functions are not called; its helpers are (the disk kernel, the plasma fractal,
the clipped zoom, the motion-blur kernel, the glass-blur pixel shuffle, the frost images).

What differs from the released CIFAR-10-C files: ``motion_blur`` and ``snow`` blur with the
package's motion kernel (a 1-D Gaussian along a line) where the authors called ImageMagick's
``MotionBlurImage``; every random draw comes from a seed per image (``corrupt``), not from one
unseeded stream. Everything else follows the script line by line.

Randomness: the helpers draw from NumPy's global generator, so ``corrupt`` seeds it (and the
pixel shuffle) from the seed it is given, and restores the previous state after.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from io import BytesIO

import numpy as np
from PIL import Image

SEVERITIES = (1, 2, 3, 4, 5)


def _helpers():  # the package imports OpenCV, numba and scikit-image: only when corrupting
    from imagecorruptions import corruptions

    return corruptions


def gaussian_noise(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    x = x / 255.0
    return np.clip(x + np.random.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x: np.ndarray, severity: int) -> np.ndarray:
    c = [500, 250, 100, 75, 50][severity - 1]
    x = x / 255.0
    return np.clip(np.random.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, severity: int) -> np.ndarray:
    import skimage

    c = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    seed = int(np.random.randint(2**31 - 1))
    x = skimage.util.random_noise(x / 255.0, mode="s&p", amount=c, rng=seed)
    return np.clip(x, 0, 1) * 255


def defocus_blur(x: np.ndarray, severity: int) -> np.ndarray:
    import cv2

    radius, alias_blur = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    x = x / 255.0
    kernel = _helpers().disk(radius=radius, alias_blur=alias_blur)
    channels = np.stack([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)], axis=2)
    return np.clip(channels, 0, 1) * 255


def glass_blur(x: np.ndarray, severity: int) -> np.ndarray:
    from skimage.filters import gaussian

    sigma, max_delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][
        severity - 1
    ]
    x = np.uint8(gaussian(x / 255.0, sigma=sigma, channel_axis=-1) * 255)
    seed = int(np.random.randint(2**31 - 1))
    x = _helpers()._shuffle_pixels_njit_glass_blur(
        x.shape[0], x.shape[1], x, (sigma, max_delta, iterations), seed
    )
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def motion_blur(x: np.ndarray, severity: int) -> np.ndarray:
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angle = np.random.uniform(-45, 45)
    return np.clip(_helpers()._motion_blur(x, radius=radius, sigma=sigma, angle=angle), 0, 255)


def _zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """The centre of ``x`` zoomed by ``factor``, cut back to ``x``'s size (the CIFAR script's
    clipped zoom, which trims what the package's leaves on)."""
    zoomed = _helpers().clipped_zoom(x, factor)
    top = (zoomed.shape[0] - x.shape[0]) // 2
    return zoomed[top : top + x.shape[0], top : top + x.shape[1]]


def zoom_blur(x: np.ndarray, severity: int) -> np.ndarray:
    factors = [
        np.arange(1, 1.06, 0.01),
        np.arange(1, 1.11, 0.01),
        np.arange(1, 1.16, 0.01),
        np.arange(1, 1.21, 0.01),
        np.arange(1, 1.26, 0.01),
    ][severity - 1]
    x = (x / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for factor in factors:
        out += _zoom(x, factor)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def snow(x: np.ndarray, severity: int) -> np.ndarray:
    import cv2

    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][severity - 1]
    x = np.asarray(x, dtype=np.float32) / 255.0
    layer = np.random.normal(size=x.shape[:2], loc=loc, scale=scale)
    layer = _zoom(layer[..., np.newaxis], zoom)
    layer[layer < threshold] = 0
    layer = np.uint8(np.clip(layer.squeeze(), 0, 1) * 255)  # the script's 8-bit snow image
    layer = _helpers()._motion_blur(layer, radius=radius, sigma=sigma, angle=np.random.uniform(-135, -45))
    layer = (np.round(layer).astype(np.uint8) / 255.0)[..., np.newaxis]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(x.shape[0], x.shape[1], 1)
    x = blend * x + (1 - blend) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def _frost_images() -> list[np.ndarray]:
    import cv2

    images = []
    for name in (
        "frost1.png",
        "frost2.png",
        "frost3.png",
        "frost4.jpg",
        "frost5.jpg",
    ):  # the script draws 5 of 6
        with importlib.resources.as_file(
            importlib.resources.files("imagecorruptions") / "frost" / name
        ) as path:
            images.append(cv2.resize(cv2.imread(str(path)), (0, 0), fx=0.2, fy=0.2))
    return images


_FROST: list[np.ndarray] = []


def frost(x: np.ndarray, severity: int) -> np.ndarray:
    c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    if not _FROST:
        _FROST.extend(_frost_images())
    image = _FROST[np.random.randint(5)]
    top, left = np.random.randint(0, image.shape[0] - 32), np.random.randint(0, image.shape[1] - 32)
    crop = image[top : top + 32, left : left + 32][..., [2, 1, 0]]  # BGR -> RGB
    return np.clip(c[0] * x + c[1] * crop, 0, 255)


def fog(x: np.ndarray, severity: int) -> np.ndarray:
    strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    x = x / 255.0
    max_val = x.max()
    x = x + strength * _helpers().plasma_fractal(mapsize=32, wibbledecay=decay)[:32, :32][..., np.newaxis]
    return np.clip(x * max_val / (max_val + strength), 0, 1) * 255


def brightness(x: np.ndarray, severity: int) -> np.ndarray:
    import skimage

    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    hsv = skimage.color.rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(skimage.color.hsv2rgb(hsv), 0, 1) * 255


def contrast(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    x = x / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def elastic_transform(x: np.ndarray, severity: int) -> np.ndarray:
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    size = 32
    alpha, sigma, affine = [
        (size * 0, size * 0, size * 0.08),
        (size * 0.05, size * 0.2, size * 0.07),
        (size * 0.08, size * 0.06, size * 0.06),
        (size * 0.1, size * 0.04, size * 0.05),
        (size * 0.1, size * 0.03, size * 0.03),
    ][severity - 1]
    image = np.asarray(x, dtype=np.float32) / 255.0
    shape = image.shape
    centre = np.float32(shape[:2]) // 2
    square = min(shape[:2]) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    pts2 = pts1 + np.random.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
    image = cv2.warpAffine(
        image, cv2.getAffineTransform(pts1, pts2), shape[:2][::-1], borderMode=cv2.BORDER_REFLECT_101
    )
    dx = (
        gaussian(np.random.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha
    ).astype(np.float32)
    dy = (
        gaussian(np.random.uniform(-1, 1, size=shape[:2]), sigma, mode="reflect", truncate=3) * alpha
    ).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    xs, ys, zs = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(ys + dy, (-1, 1)), np.reshape(xs + dx, (-1, 1)), np.reshape(zs, (-1, 1))
    return np.clip(map_coordinates(image, indices, order=1, mode="reflect").reshape(shape), 0, 1) * 255


def pixelate(x: np.ndarray, severity: int) -> np.ndarray:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    image = Image.fromarray(x)
    image = image.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX)
    return np.asarray(image, dtype=np.float64)


def jpeg_compression(x: np.ndarray, severity: int) -> np.ndarray:
    quality = [80, 65, 58, 50, 40][severity - 1]
    buffer = BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


# the benchmark's 15, in its order: noise, blur, weather, digital
CORRUPTIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}


def corrupt(image: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """``image`` (32×32×3 uint8) under ``corruption`` at ``severity``, its random draws from
    ``seed``: the same arguments give the same uint8 image."""
    if image.shape != (32, 32, 3) or image.dtype != np.uint8:
        raise ValueError(f"CIFAR corruptions take 32x32x3 uint8 images, not {image.shape} {image.dtype}")
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        return np.uint8(CORRUPTIONS[corruption](image.copy(), severity))
    finally:
        np.random.set_state(state)
