"""nn.utils: gradient clipping (not written yet)."""
