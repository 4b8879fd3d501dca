"""What the MPI ranks of a run must agree on (`mgrit_gru.training.agreement`): every option of
the run and its data, compared before the first step. The ranks here are simulated: a
communicator whose allgather returns the other ranks' views as given (a real two-rank launch
is in test_training_mpi.py)."""
import pytest
from _training_runs import TINY

from mgrit_gru import training as tr
from mgrit_gru.training.agreement import data_identity, same_on_every_rank
from mgrit_gru.training.runfolder import _data_record


class Ranks:
    """Rank ``rank`` of a communicator whose other ranks' allgather contributions are
    ``others(mine)`` (a list, this rank's place left out)."""

    def __init__(self, rank, others):
        self.rank, self.others = rank, others

    def Get_size(self):
        return 2

    def Get_rank(self):
        return self.rank

    def allgather(self, mine):
        every = self.others(mine)
        every.insert(self.rank, mine)
        return every


def _with(key, value):
    """The other rank's view: this one's with ``values[key]`` changed."""
    return lambda mine: [{**mine, "values": {**mine["values"], key: value}}]


def test_train_compares_every_option_across_ranks_before_touching_the_run_folder(tmp_path):
    for key, value in (("lr", 0.1), ("seed", 4), ("epochs", 9), ("batch_size", 8)):
        with pytest.raises(ValueError, match=f"^the MPI ranks of train differ in their options: "
                                             f"{key} \\(rank 0: .*, rank 1: {value}\\): start "
                                             "every rank with the same options"):
            tr.train(out=str(tmp_path / "r"), comm=Ranks(0, _with(key, value)), progress=False,
                     verbose=False, **TINY)
    assert not (tmp_path / "r").exists()


def test_the_other_ranks_copy_of_the_error_is_marked_as_rank_0s():
    with pytest.raises(ValueError) as err:
        same_on_every_rank(Ranks(1, _with("lr", 0.5)), "train", {"lr": 0.01})
    assert err.value.same_as_rank == 0                       # the command line says it once
    with pytest.raises(ValueError) as err:
        same_on_every_rank(Ranks(0, _with("lr", 0.5)), "train", {"lr": 0.01})
    assert not hasattr(err.value, "same_as_rank")


def test_ranks_that_loaded_other_data_are_refused():
    data = tr.prepare_data(tr.TrainConfig(**TINY))
    mine = data_identity(data, _data_record(data, "synthetic"))
    assert set(mine) == {"T", "F", "classes", "sequences", "train", "test", "labels"}
    same_on_every_rank(Ranks(0, lambda m: [m]), "train data", mine)   # the same: no error
    other = tr.prepare_data(tr.TrainConfig(**{**TINY, "seed": 4}))
    theirs = data_identity(other, _data_record(other, "synthetic"))
    with pytest.raises(ValueError, match="^the MPI ranks of train data differ in their data: "
                                         "labels \\(rank 0: '[0-9a-f]{16}', rank 1: "
                                         "'[0-9a-f]{16}'\\)"):
        same_on_every_rank(Ranks(0, lambda m: [{**m, "values": theirs}]), "train data", mine)


def test_a_rank_running_another_command_or_collective_is_named():
    with pytest.raises(ValueError, match=r"^the MPI ranks run different commands \(rank 0: "
                                         r"'train', rank 1: 'evaluate'\)"):
        same_on_every_rank(Ranks(0, lambda m: [{**m, "command": "evaluate"}]), "train", {})
    with pytest.raises(ValueError, match="^MPI rank 1 of 2 is not running mgrit-gru train"):
        same_on_every_rank(Ranks(0, lambda m: [None]), "train", {})
