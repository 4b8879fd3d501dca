"""The command line documents itself: every option of every subcommand has a help text, and a
solve that does not converge says what to try."""
import argparse

import pytest

from mgrit_gru.tools.cli import build_parser, main


def _options(parser, name="mgrit-gru"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _options(subparser, f"{name} {sub}")
        elif not isinstance(action, argparse._HelpAction):
            yield name, action


def test_every_option_of_every_subcommand_has_help():
    seen = list(_options(build_parser()))
    assert len({name for name, _ in seen}) >= 8            # the top level and the subcommands
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, a in seen
               if not (a.help and a.help.strip()) and a.help != argparse.SUPPRESS]
    assert missing == []


def test_an_unconverged_solve_says_what_to_try(capsys):
    assert main(["solve", "--seq-len", "64", "--hidden", "4", "--levels", "3", "--cf", "4",
                 "--relax", "F", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert "converged = False" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("not converged in 1 cycle: try more cycles (--iters 2)")
    for tip in ("--cf 2", "--relax FCF", "--cell implicit"):
        assert tip in last


def test_the_advice_names_only_what_differs(capsys):
    assert main(["solve", "--seq-len", "64", "--hidden", "4", "--levels", "3", "--cf", "2",
                 "--relax", "FCF", "--cell", "implicit", "--iters", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "not converged in 1 cycle: try more cycles (--iters 2)"


def test_a_converged_solve_gives_no_advice(capsys):
    assert main(["solve", "--seq-len", "32", "--hidden", "4", "--levels", "2", "--iters",
                 "30"]) == 0
    out = capsys.readouterr().out
    assert "converged = True" in out and "try" not in out
