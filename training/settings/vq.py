"""The VQ-VAE setting (main_vct.py); its tokenizer and builders: training/tokenizers/vq.py."""
from training.setting import Setting, register_setting


@register_setting
class VQSetting(Setting):
    name = "vq"
    prog = "main_vct.py"
    description = ("Train VCT concept tokens over a frozen VQ-VAE tokenizer, with the concept "
                   "disentangling loss; evaluate them on ground-truth factors.")

    def build(self, ctx):
        from training.objectives import VCTObjective, loss_options
        from training.tokenizers.vq import code_decoder, concept_encoder, vq_tokenizer
        cfg = ctx.cfg
        tokenizer = vq_tokenizer(ctx)
        encoder = concept_encoder(cfg.concepts_num, "get_args.concepts_num", tokenizer.token_dim, "get_args.hidden")
        decoder = code_decoder(encoder, tokenizer.num_codes, cfg.shape_num)
        return VCTObjective(encoder, decoder, tokenizer, **loss_options(cfg))

    def image_grids(self, ctx, objective):
        from training.tokenizers.vq import concept_grids
        return concept_grids(ctx, objective)

    def evaluate(self, ctx, objective, cache_key):
        from training.tokenizers.vq import disentanglement
        return disentanglement(ctx, objective, cache_key)

    def report_figures(self, ctx, objective, step):
        from training.visualize_run import concept_figures
        return concept_figures(ctx, objective, step)
