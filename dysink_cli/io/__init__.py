"""Files in and out: checkpoints, ffmpeg."""
