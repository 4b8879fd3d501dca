"""The hierarchy of time grids (`Hierarchy`): how many ranks a sequence can be dealt out to."""
import pytest


def test_too_many_ranks_for_one_level_names_the_time_steps():
    """One level has no C-intervals: the message used to say "(T=4, cf=1)"."""
    from mgrit_gru.mgrit import Hierarchy
    with pytest.raises(ValueError, match=r"^5 ranks but only 4 time steps \(one level: each rank "
                                         r"needs a step\): use at most 4 ranks$"):
        Hierarchy(4, 4, 1, rank=0, size=5)
    with pytest.raises(ValueError, match=r"^5 ranks but only 2 fine C-intervals \(T=8, cf=4\)"):
        Hierarchy(8, 4, 2, rank=0, size=5)
