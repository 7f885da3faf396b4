"""What one training step optimises. Each objective is one nn.Module whose ``forward(images,
generator, indices)`` returns (loss, {name: detached scalar}); the engine (and
DistributedDataParallel) only ever sees that module. ``indices`` are the dataset indices of the
images (a setting may cache per-image work by them; None when the images are not from a dataset)."""
import torch
from torch import nn

from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder
from models.vqvae import VQ_CVAE
from training.losses import map_outputs, concept_disentangling_loss, concept_similarity, concept_off_axis_share


class VQVAEObjective(nn.Module):
    """Trains the VQ-VAE tokenizer: MSE + vq + 0.5 commit (published)."""

    def __init__(self, vqvae: VQ_CVAE):
        super().__init__()
        self.vqvae = vqvae

    def forward(self, images, generator=None, indices=None):
        recon, z_e, emb, idx = self.vqvae(images)
        loss = self.vqvae.loss_function(images, recon, z_e, emb, idx)
        return loss, {"loss": loss.detach(), **self.vqvae.last_losses}

    def model_state(self):
        vq = self.vqvae
        return {"model_state_dict": vq.state_dict(),
                "model_config": {"d": vq.d, "k": vq.k, "num_channels": vq.encoder[0].in_channels}}

    def load_model_state(self, checkpoint, load):
        load(self.vqvae, checkpoint["model_state_dict"], "VQ-VAE")

    @torch.no_grad()
    def reconstruct(self, images):
        was_training = self.vqvae.training
        self.vqvae.eval()
        recon = self.vqvae(images)[0]
        self.vqvae.train(was_training)
        return recon


def loss_options(cfg):
    """The VCTObjective keyword arguments a run config (get_args) sets."""
    return {"dis_loss": cfg.dis_loss, "swap_min_change": cfg.swap_min_change, "dis_weight": cfg.dis_weight,
            "dis_start_step": cfg.dis_start_step, "similarity_weight": cfg.concept_similarity_weight,
            "axis_weight": cfg.concept_axis_weight}


class VCTObjective(nn.Module):
    """The reconstruction loss of the decoder's output against the tokenizer's targets (VQ
    code indices, or pixels) plus the concept disentangling loss, over a tokenizer (see
    training/tokenizers/vq.py). The tokenizer may hold trainable parts (CLIP's token MLP): they
    are optimised with the encoder and decoder and saved through ``tokenizer.model_state()``."""

    def __init__(self, encoder: VCT_Encoder, decoder: VCT_Decoder, tokenizer,
                 dis_loss=True, swap_min_change=1e-3, dis_weight=1.0, dis_start_step=0,
                 similarity_weight=0.0, axis_weight=0.0):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.use_dis_loss = dis_loss
        self.dis_weight = dis_weight
        self.swap_min_change = swap_min_change
        self.dis_start_step = dis_start_step
        self.similarity_weight = similarity_weight
        self.axis_weight = axis_weight
        self.step = 0  # the training step being computed (the trainer sets it: at_step)

    def at_step(self, step):
        """Called by the trainer before each step's forward pass (``step`` counts from 0)."""
        self.step = step

    def forward(self, images, generator=None, indices=None):
        logs = {}
        loss = sum(self.loss_stages(images, generator, indices, logs))
        logs["loss"] = loss.detach()
        return loss, logs

    def loss_stages(self, images, generator=None, indices=None, logs=None):
        """The loss as terms whose graphs share nothing: the reconstruction loss, then the
        (weighted) disentangling loss, which sees the first pass's concepts and decoder output
        only detached. Their sum is ``forward``'s loss; a caller may instead backpropagate each
        term as it comes (the engine does), so the reconstruction pass's activations are freed
        before the disentangling pass allocates its own: the same gradients, for the larger of
        the two passes' memory rather than their sum. ``logs`` receives the scalars."""
        logs = {} if logs is None else logs
        tokens, targets = self.tokenizer.tokenize(images, indices)
        concepts = self.encoder(tokens)
        decoded = self.decoder(concepts)
        im_loss = self.tokenizer.reconstruction_loss(decoded, targets)
        logs["im_loss"] = im_loss.detach()
        if self.similarity_weight > 0:
            similarity = concept_similarity(concepts)
            logs["concept_similarity"] = similarity.detach()
            im_loss = im_loss + self.similarity_weight * similarity
        if self.axis_weight > 0:
            off_axis = concept_off_axis_share(concepts)
            logs["concept_off_axis"] = off_axis.detach()
            im_loss = im_loss + self.axis_weight * off_axis
        concepts, decoded = concepts.detach(), map_outputs(torch.Tensor.detach, decoded)
        yield im_loss
        if self.use_dis_loss and self.step >= self.dis_start_step:
            stats = {}
            dis_loss, kept = concept_disentangling_loss(
                self.encoder, self.decoder, self.tokenizer, concepts, generator, self.swap_min_change,
                decoded=decoded, stats=stats)
            logs.update(stats)
            logs["dis_loss"] = dis_loss.detach()
            logs["swaps_kept"] = torch.tensor(float(kept))
            yield self.dis_weight * dis_loss  # x 1.0 (published) is exact: same numbers

    def model_state(self):
        return {"encoder_model_state_dict": self.encoder.state_dict(),
                "decoder_model_state_dict": self.decoder.state_dict(),
                **self.tokenizer.model_state()}

    def load_model_state(self, checkpoint, load):
        load(self.encoder, checkpoint["encoder_model_state_dict"], "VCT encoder")
        load(self.decoder, checkpoint["decoder_model_state_dict"], "VCT decoder")
        self.tokenizer.load_model_state(checkpoint, load)

    def trainable_parameters(self):
        """Encoder, decoder, then any trainable part of the tokenizer (the optimiser's order)."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def encode_images(self, images):
        """Images (B, C, H, W) in [-1, 1] -> concept tokens (B, concepts, dim)."""
        return self.encoder(self.tokenizer.tokenize(images)[0])

    @torch.no_grad()
    def decode_concepts(self, concepts):
        """Concept tokens -> images, with the most likely code per token (for pictures)."""
        return self.tokenizer.codes_to_images(self.decoder(concepts).argmax(dim=-1))
