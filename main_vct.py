"""Train VCT over a frozen VQ-VAE tokenizer: python main_vct.py --config shapes3d_ce.gin

See --help for the flags; configs/ for the settings. Torchrun runs it distributed:
torchrun --nproc_per_node N main_vct.py --config ... (batch size is per process).
"""
from training.cli import run_main, vct_entry

if __name__ == "__main__":
    run_main(vct_entry("vq"))
