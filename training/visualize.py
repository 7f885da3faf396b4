"""Image grids for tensorboard and the run directory."""
import torch
import torchvision


def to_unit_range(images):
    return ((images.float() + 1) / 2).clamp(0, 1)


def _grid(images, columns, pad=2):
    images = to_unit_range(images)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return torchvision.utils.make_grid(images, nrow=columns, padding=pad, pad_value=1.0)


@torch.no_grad()
def swap_grid(encode_images, decode_concepts, sources, targets, pad=2):
    """Concept-swap grid, (3, H, W) in [0, 1]. Row i is about source image i and target i;
    its columns are: the source, the target, then for every concept j the decoding of the
    source's concepts with concept j taken from the target. So ``n`` source images and ``C``
    concepts give ``n`` rows of ``C + 2`` images."""
    src = encode_images(sources)
    tgt = encode_images(targets)
    n, num_concepts, _ = src.shape
    swapped = src.unsqueeze(1).repeat(1, num_concepts, 1, 1)  # (n, C, C, D)
    j = torch.arange(num_concepts, device=src.device)
    swapped[:, j, j] = tgt[:, j]
    decoded = decode_concepts(swapped.flatten(0, 1)).view(n, num_concepts, *sources.shape[1:])
    cells = torch.cat([sources.unsqueeze(1), targets.unsqueeze(1), decoded.to(sources.dtype)], dim=1)
    return _grid(cells.flatten(0, 1), columns=num_concepts + 2, pad=pad)


@torch.no_grad()
def reconstruction_grid(images, reconstructions, pad=2):
    """Two rows: the images, and their reconstructions below them."""
    return _grid(torch.cat([images, reconstructions.to(images.dtype)]), columns=images.shape[0], pad=pad)
