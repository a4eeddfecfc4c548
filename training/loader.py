"""The batches a run trains on: drawn in the training process, or by worker processes so that a GPU is kept fed."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import numpy as np
import OpenImageIO as oiio
import torch

from training.data import HDRCrops

#: One training batch: LDR inputs and targets (N, 3, crop, crop), and which plates were JPEG-coded (N,).
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class WorkerBatches(torch.utils.data.IterableDataset):
    """Endless batches of ``crops``, each worker drawing from its own seed (the run's seed, the step the stream
    starts at, and the worker's number), so that no two workers repeat each other."""

    def __init__(self, crops: HDRCrops, size: int, frames: int, seed: int, start: int) -> None:
        super().__init__()
        self.crops, self.size, self.frames, self.seed, self.start = crops, size, frames, seed, start

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        self.crops.rng = np.random.default_rng([self.seed, self.start, worker])
        while True:
            ldr, hdr = self.crops.batch(self.size, self.frames)
            yield ldr, hdr, self.crops.lossy


def serial_batches(crops: HDRCrops, size: int, frames: int) -> Iterator[Batch]:
    """Endless batches drawn in this process from ``crops``'s own generator (a resumed run continues it)."""
    while True:
        ldr, hdr = crops.batch(size, frames)
        yield torch.from_numpy(ldr), torch.from_numpy(hdr), torch.from_numpy(crops.lossy)


def quiet_worker(_: int) -> None:
    """Run OpenImageIO single-threaded in a forked worker: the parent's thread pool did not survive the fork."""
    oiio.attribute("threads", 1)


def batches(crops: HDRCrops, size: int, frames: int, workers: int, seed: int, start: int) -> Iterator[Batch]:
    """Endless training batches of ``size`` pairs (shots of ``frames``): drawn here when ``workers`` is 0, else by
    that many worker processes, forked where the platform can so that the images are shared, not copied."""
    if not workers:
        return serial_batches(crops, size, frames)
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(
        WorkerBatches(crops, size, frames, seed, start),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4,
        multiprocessing_context=context,
        worker_init_fn=quiet_worker,
    )
    return iter(loader)
