"""Model-free diagnostics of rendered long videos (`dysink inspect`).

`metrics` holds the pure math; `report` streams a video (and a render log) into a `Report`,
its JSON form and its PNG.
"""
