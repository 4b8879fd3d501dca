"""Agreeing on errors across ranks (`agreed`): when one rank fails, every rank raises."""
import pytest


class _GatherComm:
    """A stand-in communicator of ``len(others) + 1`` ranks, this one rank ``rank`` (first by
    default): ``allgather`` returns the other ranks' given values with this rank's in place."""

    def __init__(self, *others, rank=0):
        self.others, self.sent, self.rank = list(others), [], rank

    def Get_rank(self):
        return self.rank

    def allgather(self, value):
        self.sent.append(value)
        return self.others[:self.rank] + [value] + self.others[self.rank:]


def test_agreed_raises_on_every_rank_when_one_fails():
    """agreed(): every rank calls allgather once; a rank whose fn raised raises its own error;
    a rank whose fn succeeded raises RankFailed quoting the first failing rank; else fn()."""
    from mgrit_gru.mgrit import RankFailed, agreed
    assert agreed(None, lambda: 7) == 7                      # no communicator: just fn()
    comm = _GatherComm(None, None)
    assert agreed(comm, lambda: 7) == 7 and comm.sent == [None]

    def bad():
        raise ValueError("d.npz: 'x' contains NaN")
    comm = _GatherComm(None)
    with pytest.raises(ValueError, match="^d.npz: 'x' contains NaN$") as e:
        agreed(comm, bad)
    assert not isinstance(e.value, RankFailed)
    assert comm.sent == ["ValueError: d.npz: 'x' contains NaN"]
    comm = _GatherComm(None, "OSError: [Errno 5] x", "ValueError: y")
    with pytest.raises(RankFailed, match=r"^rank 2 of 4 failed: OSError: \[Errno 5\] x$"):
        agreed(comm, lambda: 7)
    assert comm.sent == [None]
    with pytest.raises(KeyboardInterrupt):                   # not an error to agree on
        agreed(_GatherComm(None), lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_agreed_marks_an_error_a_lower_rank_also_raised():
    """Every rank read the same bad file: rank 0's error is printed, the others' carry
    same_as_rank (the first rank with that error) and the command line keeps quiet."""
    from mgrit_gru.mgrit import agreed

    def bad():
        raise ValueError("d.npz: 'x' contains NaN")
    same = "ValueError: d.npz: 'x' contains NaN"
    with pytest.raises(ValueError) as e:                     # rank 0: says it
        agreed(_GatherComm(same, same, rank=0), bad)
    assert not hasattr(e.value, "same_as_rank")
    with pytest.raises(ValueError) as e:                     # rank 2 of 3, rank 0 said it
        agreed(_GatherComm(same, same, rank=2), bad)
    assert e.value.same_as_rank == 0
    with pytest.raises(ValueError) as e:                     # rank 1, rank 0's error differs
        agreed(_GatherComm("ValueError: other", None, rank=1), bad)
    assert not hasattr(e.value, "same_as_rank")
