"""Train VCT over a frozen pretrained StyleGAN2: python main_gan_based.py --config church_ce.gin

A learned orthogonal deformator shifts the generator's W along one concept's direction; VCT's
concept tokens of the original and the shifted image must tell which concept moved. Configs:
church_ce.gin, cat_ce.gin, and the CPU toy toy_gan_ce.gin. Same flags, outputs, --resume and
torchrun support as main_vct.py (see --help); runs go to runs/<config>-gan-seed<seed>.
"""
from training.cli import run_main, vct_entry

if __name__ == "__main__":
    run_main(vct_entry("gan"))
