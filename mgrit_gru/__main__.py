"""``python -m mgrit_gru ...`` is the ``mgrit-gru`` command, for where the console script is not
on PATH (a compute node's bare environment) or where Python must be named, as in
``mpiexec -n 4 python -m mpi4py -m mgrit_gru bench ...``."""
import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
