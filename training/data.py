"""Training data: the dataset by name (synthetic worlds made on demand) and a deterministic,
resumable batch order.

The order of images is a pure function of (seed, epoch, step, rank), so a run resumed from a
checkpoint at step s reads exactly the batches an uninterrupted run reads after s, and the
processes of a distributed run read disjoint parts of every global batch.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datasets import get_dataset, resolve_data_dir
from datasets.ground_truth import GroundTruthData
from datasets.synthetic import make_synthetic_scenes, make_synthetic_shapes3d
from training.errors import UserError

SYNTHETIC = {
    # config name -> (maker, the real-format loader it writes for)
    "synthetic_shapes3d": (make_synthetic_shapes3d, "shapes3d"),
    "synthetic_scenes": (make_synthetic_scenes, "clevr"),
}


def build_dataset(name: str, data_dir: str, rank: int = 0):
    """The dataset ``name`` under ``data_dir`` (``$VCT_DATA`` when it is left at the ``'data'``
    default); a ``synthetic_*`` name renders its files under ``data_dir`` itself first (gin
    binds the renderer's size and factor grid) unless they are already there."""
    if name in SYNTHETIC:
        maker, loader_name = SYNTHETIC[name]
        if rank == 0:
            maker(data_dir)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        return get_dataset(loader_name, data_dir)
    return get_dataset(name, resolve_data_dir(data_dir))


class GroundTruthBatches(Dataset):
    """Item = a whole batch: index array -> (images float32 (B, C, H, W) in [-1, 1], factors,
    indices int64 (B,)). The indices let a setting cache per-image work (CLIP features).

    One read per batch (the h5/npy readers fetch sorted unique rows in one go)."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return self.data.num_observations

    def __getitem__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        factors = self.data.index_to_factors(indices)
        images = self.data.sample_observations_from_factors(factors, np.random.RandomState(0))
        images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return images * 2.0 - 1.0, torch.from_numpy(factors), torch.from_numpy(indices)


class SceneBatches(Dataset):
    """Item = a whole batch of a multi-object scene dataset: index array -> (images float32
    (B, 3, H, W) in [-1, 1], instance masks bool (B, K, H, W), indices int64 (B,))."""

    def __init__(self, scenes):
        self.scenes = scenes

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        items = [self.scenes[int(i)] for i in indices]
        return (torch.stack([image for image, _ in items]), torch.stack([masks for _, masks in items]),
                torch.from_numpy(indices))


def seed_everything(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed)


def fixed_batch(batches, count, seed=0):
    """The same ``count`` images every time (for image grids)."""
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(batches), generator=gen)[:count].numpy()
    return batches[np.sort(indices)][0]


def batches_for(data):
    """The batch view for a ground-truth (factors) or a scene (masks) dataset."""
    return GroundTruthBatches(data) if isinstance(data, GroundTruthData) else SceneBatches(data)


def image_shape_of(data):
    """(H, W, C) of the dataset's images."""
    if isinstance(data, GroundTruthData):
        return tuple(data.observation_shape)
    image, _ = data[0]
    return (image.shape[1], image.shape[2], image.shape[0])


def steps_per_epoch(num_items, batch_size, world_size=1):
    """Whole global batches per epoch (the remainder of an epoch is skipped, as with
    drop_last); a dataset smaller than one global batch is a user error."""
    steps = num_items // (batch_size * world_size)
    if steps < 1:
        raise UserError(f"dataset of {num_items} images is smaller than one global batch "
                        f"({batch_size} x {world_size} processes)")
    return steps


class StepBatchSampler(Sampler):
    """Yields the index array of every step from ``start_step`` to ``total_steps``."""

    def __init__(self, num_items, batch_size, seed, start_step, total_steps, rank=0, world_size=1):
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = steps_per_epoch(num_items, batch_size, world_size)
        self._epoch, self._perm = None, None

    def __len__(self):
        return max(self.total_steps - self.start_step, 0)

    def _permutation(self, epoch):
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_items, generator=gen).numpy()
            self._epoch = epoch
        return self._perm

    def batch_indices(self, step):
        epoch, position = divmod(step, self.steps_per_epoch)
        start = (position * self.world_size + self.rank) * self.batch_size
        return self._permutation(epoch)[start:start + self.batch_size]

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            yield self.batch_indices(step)


def make_loader(batches: Dataset, sampler: StepBatchSampler, num_workers=0, pin_memory=False):
    return DataLoader(batches, sampler=sampler, batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=4 if num_workers > 0 else None)
