"""The built-in settings; importing this package registers them (training/setting.py).

These modules hold only the Setting classes and import their tokenizers (training/tokenizers/)
inside the methods, so that an entry script's --help answers without loading torch."""
from training.settings import clip, mask, vq  # noqa: F401
from training.settings import gan  # noqa: F401  (registers gan, ffhq_gan, biggan)
