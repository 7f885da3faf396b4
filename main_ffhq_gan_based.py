"""Train VCT over the frozen FFHQ StyleGAN2 (256 px): python main_ffhq_gan_based.py --config ffhq_low_ce.gin

The StyleGAN2 setting of main_gan_based.py with the FFHQ generator (channel multiplier 1). Same
flags, outputs, --resume and torchrun support as main_vct.py (see --help); runs go to
runs/<config>-ffhq_gan-seed<seed>.
"""
from training.cli import run_main, vct_entry

if __name__ == "__main__":
    run_main(vct_entry("ffhq_gan"))
