"""DySink's memory, one room: the policy (retrieval before a block, dedup and store after it), the
pure retrieval math, block descriptors, the tiered bank and its on-disk store.
Imports engine.kv_cache, engine.loop_spec, model and errors only."""
