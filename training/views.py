"""Rectilinear views of equirectangular panoramas: what a camera with a normal lens would see of the scene.

Most of the HDR data are 360° panoramas, whose projection bends straight lines and stretches everything away from
the horizon. A pinhole view (gnomonic projection) cut out near the horizon is close to a photograph: the network
trains and is validated on such views as well as on crops of the panoramas themselves.
"""

from __future__ import annotations

import math

import numpy as np


def is_panorama(image: np.ndarray) -> bool:
    """Whether ``image`` (H, W, C) is a full equirectangular panorama (twice as wide as high)."""
    h, w = image.shape[:2]
    return w == 2 * h


def _bilinear(pano: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``pano`` sampled at pixel coordinates (u, v), wrapping around in u and clamped in v."""
    h, w = pano.shape[:2]
    u0 = np.floor(u).astype(np.int64)
    v0 = np.clip(np.floor(v).astype(np.int64), 0, h - 1)
    v1 = np.clip(v0 + 1, 0, h - 1)
    fu = (u - np.floor(u))[..., None].astype(np.float32)
    fv = np.clip(v - v0, 0.0, 1.0)[..., None].astype(np.float32)
    a, b = u0 % w, (u0 + 1) % w
    top = pano[v0, a] * (1 - fu) + pano[v0, b] * fu
    bottom = pano[v1, a] * (1 - fu) + pano[v1, b] * fu
    return top * (1 - fv) + bottom * fv


def rectilinear(pano: np.ndarray, yaw: float, pitch: float, fov: float, width: int, height: int) -> np.ndarray:
    """A pinhole view (height, width, C) of an equirectangular ``pano``: looking at longitude ``yaw`` and
    latitude ``pitch`` (degrees, 0 = the panorama's centre on the horizon), ``fov`` degrees wide."""
    h, w = pano.shape[:2]
    focal = 0.5 * width / math.tan(math.radians(fov) / 2)
    x = (np.arange(width) + 0.5 - width / 2) / focal
    y = (np.arange(height) + 0.5 - height / 2) / focal
    x, y = np.meshgrid(x, y)
    z = np.ones_like(x)
    p = math.radians(pitch)  # tilt up: rotate about the x axis
    y, z = y * math.cos(p) - z * math.sin(p), y * math.sin(p) + z * math.cos(p)
    lon = np.arctan2(x, z) + math.radians(yaw)
    lat = np.arctan2(-y, np.hypot(x, z))
    u = (lon / (2 * math.pi) + 0.5) * w - 0.5
    v = (0.5 - lat / math.pi) * h - 0.5
    return _bilinear(pano, u, v).astype(np.float32)


def native_width(pano: np.ndarray, fov: float) -> int:
    """The width of a ``fov``-degree view that keeps the panorama's own pixel density at its centre."""
    return max(16, round(pano.shape[1] * fov / 360.0))


def training_views(pano: np.ndarray, rng: np.random.Generator, count: int, density: float = 1.5) -> list[np.ndarray]:
    """``count`` views of ``pano`` evenly around the horizon (random start, pitch within ±20°, 60-90° wide,
    4:3), at ``density`` times the panorama's pixel density."""
    start = rng.uniform(0.0, 360.0)
    views = []
    for k in range(count):
        fov = rng.uniform(60.0, 90.0)
        width = round(native_width(pano, fov) * density)
        yaw, pitch = start + 360.0 * k / count, rng.uniform(-20.0, 20.0)
        views.append(rectilinear(pano, yaw, pitch, fov, width, width * 3 // 4))
    return views


def brightest_view(pano: np.ndarray, fov: float = 75.0, width: int = 384, max_pitch: float = 35.0) -> np.ndarray:
    """A 4:3 ``fov``-degree view aimed at the brightest pixel within ``max_pitch`` of the horizon (a camera
    pointed at the lamp, window or sun), ``width`` pixels wide but never above twice the panorama's density."""
    h = pano.shape[0]
    band = int(h * (0.5 - max_pitch / 180.0))
    peak = pano[band : h - band].max(axis=-1)
    row, col = np.unravel_index(int(np.argmax(peak)), peak.shape)
    yaw = ((col + 0.5) / pano.shape[1] - 0.5) * 360.0
    pitch = (0.5 - (row + band + 0.5) / h) * 180.0
    width = min(width, 2 * native_width(pano, fov))
    return rectilinear(pano, yaw, pitch, fov, width, width * 3 // 4)
