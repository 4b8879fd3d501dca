"""Tooling around the package: the ``mgrit-gru`` command line (`cli`), benchmarks (`bench`,
`bench_cuda`, `time_to_accuracy`), the performance model (`perfmodel`) and diagnostics
(`diagnostics`: the solve report, drawn by `plots` from the numbers of `measures`).

Nothing below imports from here: tools use the layers, never the other way round.
"""
