"""Procedural 2-D toy world (exact ground truth frames) and its prompt captions."""
