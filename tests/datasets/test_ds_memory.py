"""Shapes3D-format data is read lazily: RSS stays flat however large the file is."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np

from .ds_fixtures import grid

ROOT = Path(__file__).resolve().parents[2]
SIZES = (10, 10, 10, 5, 1, 10)  # 50,000 images of 64x64x3 = 614 MB


def write_large_shapes3d(data_dir: Path) -> Path:
    """Cheap constant-per-row images written in chunks (the renderer would be slower)."""
    path = data_dir / "shapes3d" / "3dshapes.h5"
    path.parent.mkdir(parents=True)
    n = int(np.prod(SIZES))
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, 64, 64, 3), dtype=np.uint8)
        block = np.empty((5000, 64, 64, 3), np.uint8)
        for start in range(0, n, len(block)):
            rows = np.arange(start, start + len(block))
            block[:] = (rows % 251).astype(np.uint8)[:, None, None, None]  # h5py broadcasts slowly
            images[start:start + len(block)] = block
        f.create_dataset("labels", data=grid(SIZES).astype(np.float64))
    return path


CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from datasets import get_dataset

    from common.memory import peak_rss_mb as peak_mb

    baseline = peak_mb()
    data = get_dataset("shapes3d", sys.argv[1])
    view = data.as_torch_dataset()
    rng = np.random.default_rng(0)
    checked = 0
    for index in rng.integers(0, len(view), 3000):
        image, factors = view[int(index)]
        checked += int(round((float(image[0, 0, 0]) + 1) * 127.5) == index % 251)
    factors, observations = data.sample(2000, np.random.RandomState(0))
    print(json.dumps({"baseline": baseline, "peak": peak_mb(), "checked": checked,
                      "n": data.num_observations}))
""")


def test_rss_stays_under_limit_on_a_50000_image_file(tmp_path):
    write_large_shapes3d(tmp_path)
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n"] == 50_000 and report["checked"] == 3000
    assert report["peak"] < 1536, report
    # Discriminating bound: loading the 614 MB images would raise the peak by > 600 MB.
    assert report["peak"] - report["baseline"] < 250, report
