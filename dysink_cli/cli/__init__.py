"""The command-line interface (the only place that prints)."""
