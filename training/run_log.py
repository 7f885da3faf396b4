"""The run directory's logs: tensorboard scalars and images, and a scalars.jsonl twin that
tests and scripts can read without tensorboard. Only rank 0 writes."""
import json
import time
from pathlib import Path

import torch

from common.atomic import atomic_write_text


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: int = None):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._writer = None
        self.scalars_path = self.run_dir / "scalars.jsonl"
        if enabled and resume_step is not None:
            self._truncate_after(resume_step)

    def _truncate_after(self, step):
        """Drop lines logged after the checkpoint we resume from: they are logged again."""
        if not self.scalars_path.is_file():
            return
        kept = [line for line, row in _rows(self.scalars_path) if row.get("step", 0) <= step]
        atomic_write_text(self.scalars_path, "".join(line + "\n" for line in kept))

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def scalars(self, step: int, values: dict, prefix: str = "train"):
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)
        with open(self.scalars_path, "a") as f:
            f.write(json.dumps({"step": step, "split": prefix, "time": round(time.time(), 3), **values}) + "\n")

    def image(self, step: int, tag: str, grid: torch.Tensor, path: Path = None):
        """``grid`` (3, H, W) in [0, 1]; also saved as PNG when ``path`` is given."""
        if not self.enabled:
            return
        self.writer.add_image(tag, grid, step)
        if path is not None:
            import torchvision
            path.parent.mkdir(parents=True, exist_ok=True)
            torchvision.utils.save_image(grid, str(path))

    def text(self, tag: str, content: str, step: int = 0):
        """Text in tensorboard (e.g. the operative gin config)."""
        if self.enabled:
            self.writer.add_text(tag, content, step)

    def close(self):
        if self._writer is not None:
            self._writer.close()


def read_scalars(run_dir, split="train"):
    """{step: {name: value}} from a run's scalars.jsonl."""
    out = {}
    for _, row in _rows(Path(run_dir) / "scalars.jsonl"):
        if row.get("split") == split:
            out[row.pop("step")] = {k: v for k, v in row.items() if k not in ("split", "time")}
    return out


def _rows(path):
    """(line, row) of every complete line; a line torn by a kill mid-write is skipped (its step
    is logged again after the resume)."""
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield line, row
