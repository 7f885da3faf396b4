"""Train the VQ-VAE image tokenizer: python train_vqvae.py --dataset shapes3d --data-dir data"""
from training.cli import run_main, vqvae_main

if __name__ == "__main__":
    run_main(vqvae_main)
