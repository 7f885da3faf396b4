"""The settings' working parts: tokenizers (what VCT reads its image tokens and targets from)
and the builders of the VCT modules over them. The Setting classes are in training/settings/."""
