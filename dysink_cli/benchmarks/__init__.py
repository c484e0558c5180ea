"""Benchmarks: the code behind `dysink bench ...` (the CLI's bench_cmd.py is their thin face).

Rooms: speed (`dysink bench speed`: the real render() into a NullSink, per configuration), results
(what it reports: medians of the steady-state blocks, the results.jsonl row; pure), floor (FLOPs
of a block, pure, and the GPU's measured rates), networks (random full-size networks or what the
render loads), encode (x264 measured apart). They return dataclasses and never print.
Floors: benchmarks import render, config, errors, io and model; never cli. This file loads no torch.
"""
