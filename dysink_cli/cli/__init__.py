"""The command-line interface, the only place that prints: thin faces over render/, io/ and config.

cli imports config, errors, timeline, render (its torch-free rooms at start-up; the session only
inside a command), io and diagnostics; never model/ or engine/. `dysink --help` loads no torch.
"""
