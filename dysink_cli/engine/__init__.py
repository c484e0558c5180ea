"""The block loop and the state it owns: KV cache, memory bank, noise."""
