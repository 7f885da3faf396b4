"""The CLIP setting (main_vct_clip.py); its tokenizer: training/tokenizers/clip.py (weights:
clip_weights.py, feature cache: clip_cache.py)."""
from pathlib import Path

from training.cli import add_gin_flag
from training.setting import register_setting
from training.settings.vq import VQSetting


def _absolute_if_file(value):
    return str(Path(value).resolve()) if Path(value).is_file() else value


@register_setting
class CLIPSetting(VQSetting):  # the VQ setting's grids and metrics, over CLIP tokens
    name = "clip"
    prog = "main_vct_clip.py"
    run_tag = "-clip"
    concepts_flag = ("--concepts_num_clip", "get_args.concepts_num_clip")
    description = ("Train VCT concept tokens over a frozen CLIP ViT-B/32 image encoder (one small MLP per "
                   "token maps its 512-d feature to 36 image tokens); the frozen VQ-VAE gives the "
                   "reconstruction targets and detokenises for the concept disentangling loss. The CLIP "
                   "features of dataset images are cached on disk. Evaluates the concepts on "
                   "ground-truth factors.")

    def add_arguments(self, parser):
        add_gin_flag(parser, "--clip_weights", "get_args.clip_weights", convert=_absolute_if_file,
                     help="CLIP image encoder weights: an open_clip tag of ViT-B-32 (default: the config's "
                          "get_args.clip_weights, else 'openai', the published weights), a local "
                          ".safetensors / state_dict file, or 'random' / 'random:SEED' (random weights, "
                          "for tests)")
        add_gin_flag(parser, "--clip_cache_dir", "get_args.clip_cache_dir",
                     help="folder of the per-image CLIP feature cache ('' turns it off; default: the "
                          "config's get_args.clip_cache_dir, else checkpoints/clip/features)")

    def build(self, ctx):
        from training.objectives import VCTObjective, loss_options
        from training.tokenizers.clip import clip_tokenizer
        from training.tokenizers.vq import code_decoder, concept_encoder
        cfg = ctx.cfg
        tokenizer = clip_tokenizer(ctx)
        encoder = concept_encoder(cfg.concepts_num_clip, "get_args.concepts_num_clip", tokenizer.clip.token_dim,
                                  "the CLIP token MLP")
        decoder = code_decoder(encoder, tokenizer.vq.num_codes, cfg.shape_num)
        return VCTObjective(encoder, decoder, tokenizer, **loss_options(cfg))

    def report_figures(self, ctx, objective, step):
        from training.visualize_run import concept_figures
        return concept_figures(ctx, objective, step, attention=False)  # CLIP's tokens are not image positions
