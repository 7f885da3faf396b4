"""The concept disentangling loss, written once against the tokenizer interface
(``detokenize`` / ``retokenize``, see training/tokenizers/vq.py)."""
import torch
import torch.nn.functional as F

from training.precision import at_least_float32


def sample_swaps(batch, num_concepts, generator=None, device=None):
    """Per sample b: a concept index c_b (uniform) and a partner s_b != b (uniform)."""
    concept = torch.randint(num_concepts, (batch,), generator=generator, device=device)
    offset = torch.randint(1, batch, (batch,), generator=generator, device=device)
    partner = (torch.arange(batch, device=device) + offset) % batch
    return concept, partner


def swap_concepts(concepts, concept, partner):
    """Copy of ``concepts`` (B, C, D) where concept c_b of sample b comes from sample s_b."""
    rows = torch.arange(concepts.shape[0], device=concepts.device)
    swapped = concepts.clone()
    swapped[rows, concept] = concepts[partner, concept]
    return swapped


def map_outputs(fn, *outputs):
    """``fn`` over decoder outputs: tensors, or (named) tuples of tensors (the mask decoder's)."""
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return fn(*outputs)
    fields = [fn(*parts) for parts in zip(*outputs)]
    return type(first)(*fields) if hasattr(first, "_fields") else type(first)(fields)


def concept_disentangling_loss(encoder, decoder, tokenizer, concepts, generator=None, min_change=1e-3,
                               decoded=None, stats=None):
    """CE(normalised per-concept distance between the re-tokenised original and swapped sets,
    swapped concept index). Returns (loss, number of samples kept).

    Detokenising runs without gradient; the re-tokenisation (``tokenizer.retokenize``, then
    ``encoder``) runs with it, so the encoder (and a trainable tokenizer part) is trained.
    ``decoded`` is ``decoder(concepts)`` when the caller has it already (the reconstruction
    loss needs it): the original set is then not decoded a second time -- the same values, as
    the weights have not changed since. The original and swapped sets go through the
    tokenizer and the encoder as one batch: the same numbers as two passes, for half the calls.
    ``stats``: a dict that receives ``swap_accuracy`` and ``swaps_unseen`` (detached tensors).
    """
    batch, num_concepts, _ = concepts.shape
    if batch < 2:
        return concepts.new_zeros(()), 0
    concept, partner = sample_swaps(batch, num_concepts, generator, concepts.device)
    with torch.no_grad():
        original = concepts.detach()
        swapped = swap_concepts(original, concept, partner)
        rows = torch.arange(batch, device=concepts.device)
        change = (swapped[rows, concept] - original[rows, concept]).norm(dim=-1)
        keep = change > min_change
        kept = int(keep.sum())
        if kept == 0:
            return concepts.new_zeros(()), 0
        if decoded is None:
            both = decoder(torch.cat([original[keep], swapped[keep]]))
        else:
            both = map_outputs(lambda org, swap: torch.cat([org.detach()[keep], swap]),
                                decoded, decoder(swapped[keep]))
        images = tokenizer.detokenize(both, generator)
    retokenised = encoder(tokenizer.retokenize(images))
    c_org, c_swap = retokenised[:kept], retokenised[kept:]
    raw = at_least_float32(c_org - c_swap).norm(dim=-1)  # (kept, C)
    distance = F.normalize(raw, dim=1)
    if stats is not None:
        # how often the largest distance is at the swapped concept; how often the swap changed
        # nothing the tokenizer sees (identical re-tokenisations: no signal for the encoder)
        stats["swap_accuracy"] = (distance.detach().argmax(dim=1) == concept[keep]).float().mean()
        stats["swaps_unseen"] = (raw.detach().amax(dim=1) <= 1e-6).float().mean()
    return F.cross_entropy(distance, concept[keep]), kept
