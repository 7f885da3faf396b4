"""The concept disentangling loss, written once against the tokenizer interface
(``detokenize`` / ``retokenize``, see training/tokenizers/vq.py), and an optional penalty on
copies of a factor across concepts (``concept_similarity``)."""
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


def concept_off_axis_share(concepts, eps=1e-12):
    """The share of the concept tokens' variance over the batch that lies off each concept's
    own first principal direction (a recipe option, ``get_args.concept_axis_weight``; not in
    the published loss): 0 when every concept varies along one line, as the evaluation's
    PCA(1) readout assumes. (tr - largest eigenvalue) of each concept's Gram matrix, summed,
    over the summed traces, so shrinking the tokens does not lower it."""
    grams = centred_grams(concepts)
    traces = grams.diagonal(dim1=1, dim2=2).sum(dim=1)
    largest = torch.linalg.eigvalsh(grams)[:, -1]
    return (traces - largest).sum() / traces.sum().clamp(min=eps)


def centred_grams(concepts):
    """Each concept's Gram matrix over the batch of its batch-centred tokens, (C, B, B)."""
    values = at_least_float32(concepts)
    centred = values - values.mean(dim=0, keepdim=True)
    return torch.einsum("bcd,ecd->cbe", centred, centred)


def unbiased_hsic(grams):
    """Unbiased HSIC estimates (C, C) between the linear Gram matrices ``grams`` (C, B, B) of
    C representations of the same B samples (Song et al. 2012, as in debiased CKA): ~0 for
    independent representations whatever their width, where the plain estimate is not."""
    num, batch = grams.shape[0], grams.shape[1]
    off = grams * (1.0 - torch.eye(batch, device=grams.device, dtype=grams.dtype))  # zero diagonals
    flat = off.reshape(num, batch * batch)
    trace = flat @ flat.T                                    # tr(K~ L~)
    sums = off.sum(dim=(1, 2))                               # 1' K~ 1
    rows = off.sum(dim=2)                                    # K~ 1, (C, B)
    cross = rows @ rows.T                                    # 1' K~ L~ 1
    return (trace + sums[:, None] * sums[None, :] / ((batch - 1) * (batch - 2))
            - 2.0 * cross / (batch - 2)) / (batch * (batch - 3))


def concept_similarity(concepts, eps=1e-20):
    """Summed squared debiased linear CKA over the batch, over the pairs of different concepts
    (a recipe option, ``get_args.concept_similarity_weight``; not in the published loss).
    CKA(i, j) = HSIC(K_i, K_j) / sqrt(HSIC(K_i, K_i) HSIC(K_j, K_j)) with K the Gram matrix of a
    concept's tokens over the batch: ~1 for two concepts holding the same factor (in any linear
    code), ~0 for concepts holding independent ones or noise. Squared and summed, it counts
    the copies. The swap loss cannot remove a copy; it reinforces it (benchmarks/RESULTS.md,
    Copies). Needs a batch of at least 4."""
    if concepts.shape[0] < 4:
        raise ValueError(f"the concept-similarity penalty needs a batch of at least 4, got {concepts.shape[0]}")
    # centred first: the estimate does not need it, but fp32 does (tokens sit far from 0)
    hsic = unbiased_hsic(centred_grams(concepts))
    own = hsic.diagonal()
    # a concept that barely varies over the batch has an estimate at noise level (or below 0):
    # it holds no factor to copy, and dividing by it would blow up
    varies = own > 1e-4 * own.max().clamp(min=eps)
    scale = own.clamp(min=eps).sqrt()
    cka = hsic / (scale[:, None] * scale[None, :]) * (varies[:, None] & varies[None, :])
    return cka.triu(diagonal=1).pow(2).sum()
