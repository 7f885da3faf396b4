"""Train VCT over the frozen BigGAN-deep-256: python main_biggan_based.py --config imgnet_ce.gin

The deformator shifts BigGAN's truncated 128-d z (one ImageNet class per run). Same flags,
outputs, --resume and torchrun support as main_vct.py (see --help); runs go to
runs/<config>-biggan-seed<seed>. Needs the pytorch-pretrained-biggan package.
"""
from training.cli import run_main, vct_entry

if __name__ == "__main__":
    run_main(vct_entry("biggan"))
