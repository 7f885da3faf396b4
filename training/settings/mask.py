"""The scene-decomposition setting (main_vct_mask.py); its mask decoder tokenizer, objective
and held-out scenes: training/tokenizers/mask.py."""
from training.errors import UserError
from training.setting import Setting, register_setting


@register_setting
class MaskSetting(Setting):
    name = "mask"
    prog = "main_vct_mask.py"
    run_tag = "-mask"
    example_config = "clevr_ce.gin"
    description = ("Train VCT concept tokens with the mask decoder (scene decomposition): each "
                   "concept is decoded into an RGB image and a mask, the reconstruction is their "
                   "mask-weighted sum (pixel MSE + concept disentangling loss). Evaluates ARI / "
                   "FG-ARI / mBO of the concept masks on a held-out split with ground-truth masks.")

    def build(self, ctx):
        from training.objectives import loss_options
        from training.tokenizers.mask import MaskTokenizer, MaskVCTObjective, checked_heldout_scenes, mask_decoder
        from training.tokenizers.vq import concept_encoder, vq_tokenizer
        cfg = ctx.cfg
        if cfg.recon_focal_gamma:
            raise UserError(f"get_args.recon_focal_gamma = {cfg.recon_focal_gamma!r}: it weights the VQ code "
                            f"cross-entropy, and the mask setting reconstructs pixels (MSE)")
        self.scenes, self.split = checked_heldout_scenes(ctx)
        vq = vq_tokenizer(ctx)
        tokenizer = MaskTokenizer(vq.vqvae, vq.soft_retokens)
        encoder = concept_encoder(cfg.concepts_num, "get_args.concepts_num", tokenizer.token_dim, "get_args.hidden")
        return MaskVCTObjective(encoder, mask_decoder(ctx, encoder), tokenizer, **loss_options(cfg))

    def image_grids(self, ctx, objective):
        from training.tokenizers.mask import decomposition_grids
        return decomposition_grids(ctx, objective, self.scenes)

    def evaluate(self, ctx, objective, cache_key):
        from training.tokenizers.mask import decomposition_scores
        return decomposition_scores(ctx, objective, self.scenes, self.split)

    def report_figures(self, ctx, objective, step):
        from training.visualize_run import concept_figures, scene_figures
        return {**concept_figures(ctx, objective, step), **scene_figures(ctx, objective, self.scenes)}
