"""Train VCT with a frozen CLIP image encoder as the tokenizer:

    python main_vct_clip.py --config shapes3d_ce.gin                  # published: ViT-B/32 'openai'
    python main_vct_clip.py --config toy_clip_ce.gin                  # CPU toy run, random CLIP weights
    python main_vct_clip.py --config shapes3d_ce.gin --clip_weights PATH/open_clip_model.safetensors

The same flags, outputs, --resume and torchrun support as main_vct.py; see --help. Without
network, a missing weights file is reported with the URL to fetch and where to save it.
"""

from training.cli import run_main, vct_entry

if __name__ == "__main__":
    run_main(vct_entry("clip"))
