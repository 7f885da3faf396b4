"""The built-in settings; importing this package registers them (training/setting.py)."""
from training.settings import clip, mask, vq  # noqa: F401
