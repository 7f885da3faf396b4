"""Train VCT with the mask decoder (scene decomposition): python main_vct_mask.py --config clevr_ce.gin

Each concept token is decoded into an RGB image and a mask; the masks give the decomposition,
scored by ARI / FG-ARI / mBO on the held-out split. Same flags, outputs, --resume and torchrun
support as main_vct.py (see --help); runs go to runs/<config>-mask-seed<seed> by default.
"""

from training.cli import run_main, vct_entry

if __name__ == "__main__":
    run_main(vct_entry("mask"))
