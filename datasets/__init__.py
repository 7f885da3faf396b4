"""Ground-truth and scene datasets for VCT.

    from datasets import get_dataset
    data = get_dataset("shapes3d", "/path/to/data")       # GroundTruthData
    train = data.as_torch_dataset()                        # (image CHW [-1, 1], factor classes)
    scenes = get_dataset("clevr", "/path/to/data", split="test")   # (image, instance masks)

File layouts are described in datasets/README.md; every loader raises a one-line
DatasetError naming the expected path and layout.
"""
from .data_root import data_root, resolve_data_dir
from .errors import DatasetError
from .ground_truth import GroundTruthData, GroundTruthTorchDataset, IndexedGroundTruthData
from .registry import ALIASES, NAMES, SCENE_NAMES, canonical_name, get_dataset
from .scenes import SceneDataset
from .synthetic import make_synthetic_scenes, make_synthetic_shapes3d

__all__ = [
    "DatasetError", "GroundTruthData", "GroundTruthTorchDataset", "IndexedGroundTruthData",
    "SceneDataset", "get_dataset", "canonical_name", "NAMES", "SCENE_NAMES", "ALIASES",
    "make_synthetic_shapes3d", "make_synthetic_scenes", "data_root", "resolve_data_dir",
]
