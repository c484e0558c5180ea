"""Files in and out: weight files and weights folders, LoRA adapters, ffmpeg (encode, probe, join).

io imports config, errors and model/; never engine, render, cli or parity.
"""
