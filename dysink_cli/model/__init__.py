"""Neural networks: Wan DiT, Wan VAE, umT5 encoder, PE-Core vision tower (no inference state)."""
