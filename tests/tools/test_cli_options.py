"""The command line declares the MGRIT flags once, in one helper, for bench, solve and train,
and turns them into one `MGRITOptions`."""
import pytest

from mgrit_gru.mgrit import MGRITOptions
from mgrit_gru.tools import cli, diagnostics

FLAGS = ["--levels", "3", "--cf", "4,2", "--relax", "FCF,F,F", "--tol", "0", "--no-skip",
         "--coarse-input", "average"]


@pytest.mark.parametrize("command", [["bench"], ["solve"], ["train", "--out", "run"]])
def test_every_subcommand_reads_the_mgrit_flags_alike(command):
    args = cli.build_parser().parse_args(command + FLAGS)
    opts = cli._mgrit_options(args, max_iter=5)
    assert opts == MGRITOptions(levels=3, cf=(4, 2), relax=("FCF", "F", "F"), tol=0.0,
                                skip=False, coarse_input="average", max_iter=5)


def test_flags_left_out_keep_the_options_defaults():
    args = cli.build_parser().parse_args(["bench"])
    assert cli._mgrit_options(args) == MGRITOptions()


def test_solve_hands_the_options_object_to_the_solve(monkeypatch):
    seen = {}
    monkeypatch.setattr(diagnostics, "solve_and_report", lambda **kw: seen.update(kw))
    assert cli.main(["solve", "--seq-len", "32"] + FLAGS + ["--iters", "3"]) == 0
    assert seen["options"] == MGRITOptions(levels=3, cf=(4, 2), relax=("FCF", "F", "F"),
                                           tol=0.0, skip=False, coarse_input="average",
                                           max_iter=3)


def test_a_bad_per_level_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["solve", "--cf", "4,x"])
    assert "'4,x' is not one value or a comma-separated list per level" in capsys.readouterr().err
