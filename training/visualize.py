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
def swap_grid(encode_images, decode_concepts, sources, targets, pad=2, chunk=32):
    """Concept-swap grid, (3, H, W) in [0, 1]. Row i is about source image i and target i;
    its columns are: the source, the target, then for every concept j the decoding of the
    source's concepts with concept j taken from the target. So ``n`` source images and ``C``
    concepts give ``n`` rows of ``C + 2`` images. The n*C swapped sets are decoded ``chunk``
    at a time (memory stays that of a training batch)."""
    src = encode_images(sources)
    tgt = encode_images(targets)
    n, num_concepts, _ = src.shape
    swapped = src.unsqueeze(1).repeat(1, num_concepts, 1, 1)  # (n, C, C, D)
    j = torch.arange(num_concepts, device=src.device)
    swapped[:, j, j] = tgt[:, j]
    decoded = torch.cat([decode_concepts(part) for part in swapped.flatten(0, 1).split(chunk)])
    decoded = decoded.view(n, num_concepts, *sources.shape[1:])
    cells = torch.cat([sources.unsqueeze(1), targets.unsqueeze(1), decoded.to(sources.dtype)], dim=1)
    return _grid(cells.flatten(0, 1), columns=num_concepts + 2, pad=pad)


@torch.no_grad()
def reconstruction_grid(images, reconstructions, pad=2):
    """Two rows: the images, and their reconstructions below them."""
    return _grid(torch.cat([images, reconstructions.to(images.dtype)]), columns=images.shape[0], pad=pad)


def segment_palette(count, device=None):
    """``count`` distinct colours (evenly spaced hues), (count, 3) in [-1, 1]."""
    import colorsys
    colours = [colorsys.hsv_to_rgb(i / max(count, 1), 0.75, 0.95) for i in range(count)]
    return torch.tensor(colours, device=device) * 2 - 1


@torch.no_grad()
def mask_grid(images, output, pad=2):
    """Scene-decomposition grid, (3, H, W) in [0, 1]. One row per image: the image, the
    reconstruction, every concept's RGB where its mask is (white elsewhere), and the argmax
    segmentation (one colour per concept). ``output`` is the mask decoder's MaskOutput, so
    ``n`` images and ``C`` concepts give ``n`` rows of ``C + 3`` images."""
    masks = output.masks.unsqueeze(2).to(images.dtype)                 # (n, C, 1, H, W)
    masked = masks * output.rgb.to(images.dtype) + (1 - masks)         # white is 1 in [-1, 1]
    num_concepts = output.masks.shape[1]
    segmentation = segment_palette(num_concepts, images.device)[output.masks.argmax(dim=1)]
    cells = torch.cat([images.unsqueeze(1), output.image.to(images.dtype).unsqueeze(1), masked,
                       segmentation.permute(0, 3, 1, 2).to(images.dtype).unsqueeze(1)], dim=1)
    return _grid(cells.flatten(0, 1), columns=num_concepts + 3, pad=pad)
