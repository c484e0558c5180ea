"""Parity runner: replays reference fixtures through dysink and checks outputs and decisions."""
