"""The block loop and the state it owns: KV cache, DySink memory (memory/), noise, CUDA graphs.
Imports engine, model and errors only: nothing of render, cli, io or the user's config."""
