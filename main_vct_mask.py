"""Train VCT with the mask decoder (scene decomposition): python main_vct_mask.py --config clevr_ce.gin

Each concept token is decoded into an RGB image and a mask; the masks give the decomposition,
scored by ARI / FG-ARI / mBO on the held-out split. Same flags, outputs, --resume and torchrun
support as main_vct.py (see --help); runs go to runs/<config>-mask-seed<seed> by default.
"""
import functools

from training.cli import run_main

if __name__ == "__main__":
    from training.runner import vct_main
    run_main(functools.partial(vct_main, setting="mask"))
