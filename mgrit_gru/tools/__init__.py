"""Tooling around the package: the ``mgrit-gru`` command line (`cli`), benchmarks (`bench`,
`bench_cuda`), the performance model (`perfmodel`) and diagnostics plots (`diagnostics`).

Nothing below imports from here: tools use the layers, never the other way round.
"""
