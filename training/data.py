"""Training data: HDR images read with OIIO, LDR inputs synthesised like a camera, paired folders."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.node.encoding import encode

HDR_SUFFIXES = {".exr", ".hdr"}
LDR_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def read_rgb(path: Path) -> np.ndarray:
    """Read the first three channels of an image as float32 (H, W, 3), RGB order, non-finite values set to 0."""
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise OSError(f"{path}: cannot open: {oiio.geterror()}")
    try:
        spec = inp.spec()
        if spec.nchannels < 3:
            raise ValueError(f"{path}: needs 3 colour channels, has {spec.nchannels}")
        pixels = inp.read_image(0, 0, 0, 3, oiio.FLOAT)
        if pixels is None or inp.has_error:
            raise OSError(f"{path}: cannot read pixels: {inp.geterror()}")
    finally:
        inp.close()
    pixels = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, 3)
    return np.nan_to_num(pixels, nan=0.0, posinf=0.0, neginf=0.0)


def write_ldr(ldr: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) image in [0, 1] as 8-bit sRGB."""
    h, w, _ = ldr.shape
    spec = oiio.ImageSpec(w, h, 3, oiio.UINT8)
    spec.attribute("oiio:ColorSpace", "srgb_tx")
    out = oiio.ImageOutput.create(str(path))
    if out is None or not out.open(str(path), spec):
        raise OSError(f"{path}: cannot write: {oiio.geterror()}")
    ok = out.write_image(np.clip(ldr, 0.0, 1.0).astype(np.float32))
    out.close()
    if not ok:
        raise OSError(f"{path}: cannot write: {out.geterror()}")


def list_images(folder: Path, suffixes: set[str]) -> list[Path]:
    """Files in ``folder`` with one of ``suffixes``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


def paired_files(root: Path) -> list[tuple[Path, Path]]:
    """(LDR, HDR) pairs of the seed layout ``root/LDR`` + ``root/HDR``, matched by sorted order and checked by stem."""
    ldr = list_images(root / "LDR", LDR_SUFFIXES)
    hdr = list_images(root / "HDR", HDR_SUFFIXES)
    if len(ldr) != len(hdr):
        raise ValueError(f"{root}: {len(ldr)} LDR files but {len(hdr)} HDR files")
    for a, b in zip(ldr, hdr, strict=True):
        if a.stem != b.stem:
            raise ValueError(f"{root}: LDR {a.name} is paired with HDR {b.name}; stems must match")
    return list(zip(ldr, hdr, strict=True))


#: The share of a plate's clipped pixels, brightest first, that a source-centred crop is centred on.
SOURCE_SHARE = 0.02


@dataclass(frozen=True)
class Synthesis:
    """How LDR inputs are made from HDR images (a family of cameras), and how targets are encoded.

    The exposure is set on the whole image (a clipped fraction drawn log-uniformly from ``clip_min`` to
    ``clip_max``), then a crop is taken: centred on a clipped pixel with probability ``focus``, anywhere otherwise
    (so some crops have no clipping at all). With probability ``source`` the crop is instead centred on one of the
    brightest ``SOURCE_SHARE`` of the clipped pixels: the lights (a sun's disc, a lamp's filament) that hold most
    of a clipped area's light in a few of its pixels, and that a crop around any clipped pixel rarely meets.
    A shot's later frames (``HDRCrops.shot``) are the crop moved by up to ``shift`` px across and down (0: the same
    view, only the noise and the JPEG drawn anew).
    Images are also seen box-downscaled by each factor of ``scales`` that leaves them larger than the crop, so a
    highlight appears at several sizes. Each crop's camera draws a white balance, sensor noise, an optional
    highlight shoulder, a response curve (sRGB with a gamma tweak and an S-curve), quantisation and an optional
    JPEG compression.
    """

    headroom: float = 256.0
    encoding: str = "mu-law"
    clip_min: float = 0.002
    clip_max: float = 0.12
    focus: float = 0.75
    source: float = 0.0
    shift: float = 1.0
    scales: tuple[int, ...] = (1, 2, 4)
    white_balance: float = 0.08
    noise: float = 0.006
    shoulder: float = 0.3
    gamma_jitter: float = 0.15
    contrast: float = 0.3
    jpeg: float = 0.4
    jpeg_quality: tuple[int, int] = (60, 97)
    bits: int = 8

    @classmethod
    def plain(cls, **overrides: object) -> Synthesis:
        """A plain sRGB camera: no white balance, noise, shoulder, curve tweak or JPEG; only clipping and bits."""
        base = dict(white_balance=0.0, noise=0.0, shoulder=0.0, gamma_jitter=0.0, contrast=0.0, jpeg=0.0)
        return cls(**{**base, **overrides})  # type: ignore[arg-type]


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function on [0, 1]."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def expose(hdr: np.ndarray, clipped_fraction: float) -> np.ndarray | None:
    """Scale ``hdr`` so that ``clipped_fraction`` of its pixels exceed 1 in some channel; None if it is black."""
    peak = hdr.max(axis=-1)
    level = float(np.quantile(peak, 1.0 - clipped_fraction))
    if not math.isfinite(level) or level <= 1e-6:
        return None
    return hdr / level


def shoulder(x: np.ndarray, knee: float) -> np.ndarray:
    """A camera's highlight roll-off: identity below ``knee``, then a tanh curve that approaches 1."""
    span = 1.0 - knee
    return np.where(x > knee, knee + span * np.tanh((x - knee) / span), x)


def jpeg_roundtrip(ldr: np.ndarray, quality: int) -> np.ndarray:
    """``ldr`` (H, W, 3) in [0, 1] compressed as an 8-bit JPEG of ``quality`` and decoded again."""
    h, w, _ = ldr.shape
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        path = str(Path(tmp) / "crop.jpg")
        spec = oiio.ImageSpec(w, h, 3, oiio.UINT8)
        spec.attribute("Compression", f"jpeg:{quality}")
        out = oiio.ImageOutput.create(path)
        if out is None or not out.open(path, spec) or not out.write_image(np.ascontiguousarray(ldr, np.float32)):
            raise OSError(f"cannot write a JPEG: {oiio.geterror()}")
        out.close()
        return read_rgb(Path(path))


@dataclass(frozen=True)
class Camera:
    """One camera drawn from a ``Synthesis``: its noise level, highlight shoulder, response curve and JPEG quality.

    ``render`` takes a new noise draw each time, so one camera can photograph one scene twice, as a shot does.
    """

    noise: float = 0.0
    knee: float | None = None
    gamma: float = 1.0
    contrast: float = 0.0
    jpeg_quality: int | None = None
    bits: int = 8

    @classmethod
    def draw(cls, rng: np.random.Generator, syn: Synthesis) -> Camera:
        """A random camera of the family ``syn`` describes."""
        noise = rng.uniform(0.0, syn.noise) if syn.noise else 0.0
        knee = rng.uniform(0.6, 0.9) if syn.shoulder and rng.random() < syn.shoulder else None
        gamma = math.exp(rng.uniform(-syn.gamma_jitter, syn.gamma_jitter))
        contrast = rng.uniform(-0.5 * syn.contrast, syn.contrast) if syn.contrast else 0.0
        jpeg = syn.jpeg and rng.random() < syn.jpeg
        quality = int(rng.integers(syn.jpeg_quality[0], syn.jpeg_quality[1] + 1)) if jpeg else None
        return cls(noise, knee, gamma, contrast, quality, syn.bits)

    def render(self, hdr_rel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An LDR image in [0, 1] of HDR whose white is 1: noise, shoulder, clip, curve, quantise, JPEG."""
        x = np.maximum(hdr_rel, 0.0)
        if self.noise:
            x = x + rng.normal(0.0, self.noise, x.shape) * np.sqrt(np.clip(x, 0.0, 1.0))
        if self.knee is not None:
            x = shoulder(x, self.knee)
        y = np.power(srgb_encode(np.clip(x, 0.0, 1.0)), self.gamma)
        if self.contrast:
            y = (1.0 - self.contrast) * y + self.contrast * y * y * (3.0 - 2.0 * y)
        levels = 2**self.bits - 1
        ldr = (np.round(y * levels) / levels).astype(np.float32)
        if self.jpeg_quality is not None:
            ldr = jpeg_roundtrip(ldr, self.jpeg_quality)
        return ldr


def synthesise(hdr_rel: np.ndarray, rng: np.random.Generator, syn: Synthesis) -> np.ndarray:
    """A camera-like LDR image in [0, 1] from HDR whose white is 1, through a camera drawn from ``syn``."""
    return Camera.draw(rng, syn).render(hdr_rel, rng)


def subpixel_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``img`` (H + 1, W + 1, C) resampled bilinearly at an offset of (``dy``, ``dx``) in [0, 1): (H, W, C)."""
    a, b = img[:-1, :-1], img[:-1, 1:]
    c, d = img[1:, :-1], img[1:, 1:]
    return (1 - dy) * ((1 - dx) * a + dx * b) + dy * ((1 - dx) * c + dx * d)


def white_balance(rng: np.random.Generator, amount: float) -> np.ndarray:
    """Per-channel gains of a camera's white balance (green kept at 1), log-normal with spread ``amount``."""
    gains = np.exp(rng.normal(0.0, amount, 3)).astype(np.float32)
    return gains / gains[1]


def target(hdr_rel: np.ndarray, syn: Synthesis) -> np.ndarray:
    """The network's training target: HDR relative to white, encoded as the weights will say (``encoding.py``)."""
    return encode(hdr_rel, syn.headroom, syn.encoding)


def augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flip and quarter-turn rotation."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.rot90(img, int(rng.integers(4)))


def downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter ``img`` (H, W, C) by an integer ``factor`` (light is averaged, as a smaller sensor would)."""
    if factor == 1:
        return img
    h, w = img.shape[0] // factor, img.shape[1] // factor
    return img[: h * factor, : w * factor].reshape(h, factor, w, factor, -1).mean(axis=(1, 3))


@dataclass
class Level:
    """One image at one scale, the band of rows that crops may take, and its pixels ordered brightest first."""

    image: np.ndarray
    top: int
    bottom: int
    order: np.ndarray
    peaks: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray, crop: int, pole_margin: float) -> Level:
        """The level of ``image``, keeping ``pole_margin`` of its height away at each pole of a tall panorama."""
        h = image.shape[0]
        margin = int(h * pole_margin) if h > 4 * crop else 0
        band = image[margin : h - margin].max(axis=-1).ravel()
        order = np.argsort(-band, kind="stable")
        return cls(image, margin, h - margin, order, band[order])


class HDRCrops:
    """Random crops of HDR images with synthesised LDR inputs (see ``Synthesis``); deterministic for a given seed."""

    #: Whether the last crop's camera coded it as JPEG, and each pair of the last ``batch`` (N,).
    last_lossy = False
    lossy = np.zeros(0, dtype=bool)

    def __init__(self, images: list[np.ndarray], crop: int, syn: Synthesis, seed: int, pole_margin: float = 0.15):
        if not images:
            raise ValueError("no HDR images to train on")
        small = [i for i, im in enumerate(images) if min(im.shape[:2]) < crop]
        if small:
            raise ValueError(f"image {small[0]} is smaller than the {crop}-pixel crop")
        self.crop = crop
        self.syn = syn
        self.rng = np.random.default_rng(seed)
        self.levels = []
        for im in images:
            im = np.maximum(im, 0.0).astype(np.float32)
            scaled = (downscale(im, f) for f in syn.scales)
            self.levels.append([Level.of(s, crop, pole_margin) for s in scaled if min(s.shape[:2]) >= crop])
        areas = np.array([im.shape[0] * im.shape[1] for im in images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def _window(self, level: Level, clipped: int) -> tuple[int, int]:
        """Top-left corner of a crop: around one of the brightest of the ``clipped`` pixels (``Synthesis.source``),
        around any of them, or anywhere in the band."""
        h, w = level.image.shape[:2]
        c = self.crop
        pool, spread = 0, 2  # how many of the brightest pixels the crop may centre on; its offset is c // spread
        if clipped and self.syn.source and self.rng.random() < self.syn.source:
            pool, spread = max(1, int(clipped * SOURCE_SHARE)), 4  # the lights, kept nearer the crop's centre
        elif clipped and self.rng.random() < self.syn.focus:
            pool = clipped
        if pool:
            y, x = divmod(int(level.order[self.rng.integers(pool)]), w)
            y += level.top + int(self.rng.integers(-c // spread, c // spread + 1)) - c // 2
            x += int(self.rng.integers(-c // spread, c // spread + 1)) - c // 2
        else:
            y, x = int(self.rng.integers(level.top, level.bottom)), int(self.rng.integers(0, w))
        return int(np.clip(y, 0, h - c)), int(np.clip(x, 0, w - c))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One (LDR, target) pair, each (crop, crop, 3) float32."""
        return self.shot(1)[0]

    def shot(self, frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``frames`` (LDR, target) pairs of one crop through one camera: the first as ``sample`` draws it, each
        other one shifted by a random sub-pixel offset and with its own noise and JPEG, as the frames of a shot."""
        while True:
            levels = self.levels[self.rng.choice(len(self.levels), p=self.weights)]
            level = levels[int(self.rng.integers(len(levels)))]
            fraction = math.exp(self.rng.uniform(math.log(self.syn.clip_min), math.log(self.syn.clip_max)))
            clipped = min(len(level.peaks) - 1, int(fraction * len(level.peaks)))
            white = float(level.peaks[clipped])
            if not math.isfinite(white) or white <= 1e-6:
                continue
            y, x = self._window(level, clipped)
            c = self.crop + (frames > 1)  # a shifted frame resamples one more row and column
            if frames > 1:
                y, x = max(0, min(y, level.image.shape[0] - c)), max(0, min(x, level.image.shape[1] - c))
            window = level.image[y : y + c, x : x + c]
            if window.shape[:2] != (c, c):
                continue
            window = augment(window, self.rng) / white
            if self.syn.white_balance:
                window = window * white_balance(self.rng, self.syn.white_balance)
            camera = Camera.draw(self.rng, self.syn)
            self.last_lossy = camera.jpeg_quality is not None
            rels = [window[: self.crop, : self.crop]]
            rels += [subpixel_shift(window, *self.rng.uniform(0.0, self.syn.shift, 2)) for _ in range(frames - 1)]
            return [(camera.render(rel, self.rng), target(rel, self.syn)) for rel in rels]

    def batch(self, size: int, frames: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``size`` pairs stacked as (N, 3, crop, crop) arrays: ``size // frames`` shots of ``frames`` consecutive
        pairs (``shot``), or ``size`` independent pairs for 1; ``lossy`` then says which were JPEG-coded."""
        if size % frames:
            raise ValueError(f"a batch of {size} does not hold whole shots of {frames} frames")
        pairs, lossy = [], []
        for _ in range(size // frames):
            shot = self.shot(frames) if frames > 1 else [self.sample()]
            pairs += shot
            lossy += [self.last_lossy] * len(shot)
        self.lossy = np.array(lossy)
        ldr = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
        hdr = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(ldr), np.ascontiguousarray(hdr)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """The inverse of ``srgb_encode``: sRGB values in [0, 1] to linear."""
    x = np.clip(encoded, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def well_exposed(display: np.ndarray, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """(H, W) mask of pixels whose display-referred max channel lies in [low, high]: neither clipped nor noisy."""
    peak = display.max(axis=-1)
    return (peak >= low) & (peak <= high)


def white_ratio(ldr: np.ndarray, hdr: np.ndarray) -> float:
    """The factor that puts ``hdr`` on the LDR's scale (its white at 1).

    It is the median, over the LDR's well-exposed pixels, of the linearised LDR's luminance over the HDR's.
    """
    luma = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    ok = well_exposed(ldr)
    lin, ref = srgb_decode(ldr)[ok] @ luma, hdr[ok] @ luma
    ok = ref > 0
    if ok.sum() < 16:
        raise ValueError("too few well-exposed pixels to align the HDR image to the LDR one")
    return float(np.median(lin[ok] / ref[ok]))


def load_pair(ldr_path: Path, hdr_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An (LDR, HDR) pair: the LDR as read (display-referred sRGB in [0, 1]) and the HDR relative to its white."""
    ldr = np.clip(read_rgb(ldr_path), 0.0, 1.0)
    hdr = np.maximum(read_rgb(hdr_path), 0.0)
    if ldr.shape != hdr.shape:
        raise ValueError(
            f"{ldr_path.name} is {ldr.shape[1]}x{ldr.shape[0]} but {hdr_path.name} is "
            f"{hdr.shape[1]}x{hdr.shape[0]}; a pair must have one size"
        )
    try:
        ratio = white_ratio(ldr, hdr)
    except ValueError as exc:
        raise ValueError(f"{ldr_path.name}: {exc}") from exc
    return ldr, hdr * ratio


class PairedCrops:
    """Random aligned crops of (LDR, HDR) pairs; the same interface and determinism as ``HDRCrops``.

    The LDR is the network's input as stored (scored as a lossless plate: ``lossy`` is all false); the target is
    the HDR relative to the LDR's white (see ``white_ratio``) divided by the headroom.
    """

    last_lossy = False
    lossy = np.zeros(0, dtype=bool)

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], crop: int, syn: Synthesis, seed: int):
        if not pairs:
            raise ValueError("no (LDR, HDR) pairs to train on")
        small = [i for i, (ldr, _) in enumerate(pairs) if min(ldr.shape[:2]) < crop]
        if small:
            raise ValueError(f"pair {small[0]} is smaller than the {crop}-pixel crop")
        self.pairs = [np.concatenate((ldr, hdr), axis=-1).astype(np.float32) for ldr, hdr in pairs]
        self.crop = crop
        self.syn = syn
        self.rng = np.random.default_rng(seed)
        areas = np.array([p.shape[0] * p.shape[1] for p in self.pairs], dtype=np.float64)
        self.weights = areas / areas.sum()

    @classmethod
    def from_folder(cls, root: Path, crop: int, syn: Synthesis, seed: int) -> PairedCrops:
        """Crops of every pair of ``paired_files(root)``."""
        return cls([load_pair(a, b) for a, b in paired_files(root)], crop, syn, seed)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """One (LDR, target) pair, each (crop, crop, 3) float32."""
        both = self.pairs[self.rng.choice(len(self.pairs), p=self.weights)]
        h, w = both.shape[:2]
        y = int(self.rng.integers(0, h - self.crop + 1))
        x = int(self.rng.integers(0, w - self.crop + 1))
        crop = augment(both[y : y + self.crop, x : x + self.crop], self.rng)
        return np.ascontiguousarray(crop[..., :3]), target(crop[..., 3:], self.syn)

    batch = HDRCrops.batch
