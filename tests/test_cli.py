"""The command line's contract: exit status (0 done, 1 error, 2 usage, 3 missing device, 4
timeout, all in --help), one line per error (the traceback only with -v), --version, -v/-q,
and help that states each default once."""
import re
import subprocess

import pytest

from gnuradio.kbsemcom.apps import cli
from conftest import kbsemcom_command


def test_help_documents_every_exit_status(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for line in ("0  done", "1  an error", "2  a usage error", "3  a device or dependency",
                 "4  a timeout", "--version", "--verbose", "--quiet"):
        assert line in out, line


def test_version_is_the_package_version(capsys):
    from importlib import metadata
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    try:
        expected = metadata.version("gr-kbsemcom")
    except metadata.PackageNotFoundError:
        expected = "0.1.0"
    assert capsys.readouterr().out.strip() == f"kbsemcom {expected}"


def test_usage_errors_exit_2(capsys):
    for argv in (["no-such-command"], ["demo", "--no-such-option"], ["demo", "--seed", "x"],
                 ["-v", "demo", "-q"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 2, argv
        assert "usage: kbsemcom" in capsys.readouterr().err


def test_a_runtime_error_is_one_line_and_exit_1(capsys, tmp_path):
    assert cli.main(["check", "--kb", str(tmp_path / "no-kb"),
                     "--codec", str(tmp_path / "no.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kbsemcom check: error:"), err


def _boom(args):
    raise RuntimeError("a bug")


def _replace(monkeypatch, command, func):
    """Make the parser's subcommand run func instead."""
    real = cli.build_parser

    def build():
        parser = real()
        parser._subparsers._group_actions[0].choices[command].set_defaults(func=func)
        return parser
    monkeypatch.setattr(cli, "build_parser", build)


@pytest.fixture
def buggy(monkeypatch):
    """`check` fails with an unexpected exception."""
    _replace(monkeypatch, "check", _boom)


CHECK = ["check", "--kb", "k", "--codec", "c"]


def test_an_unexpected_error_is_one_line_and_the_traceback_only_with_v(buggy, capsys):
    assert cli.main(CHECK) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: a bug" in err[0] and "run with -v" in err[0], err
    for verbose in (["-v"] + CHECK, CHECK + ["--verbose"]):
        assert cli.main(verbose) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and "in _boom" in err and "run with -v" not in err


@pytest.mark.parametrize("argv,off", [(CHECK, False), (["-q"] + CHECK, True),
                                      (CHECK + ["--quiet"], True),
                                      (["build-kb", "--json"], True)])
def test_quiet_and_json_turn_progress_bars_off(monkeypatch, argv, off):
    from gnuradio.kbsemcom.core.progress import bars_off
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    seen = {}

    def look(args):
        seen["off"] = bars_off(True)  # what a caller with progress=True gets
        return 0
    _replace(monkeypatch, argv[0] if argv[0] != "-q" else argv[1], look)
    assert cli.main(argv) == 0
    assert seen["off"] is off


def test_verbose_logs_info(buggy, monkeypatch):
    import logging
    seen = {}
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.update(kw))
    cli.main(["-v"] + CHECK)
    assert seen["level"] == logging.INFO
    cli.main(CHECK)
    assert seen["level"] == logging.WARNING


def test_each_default_is_stated_once_in_help():
    parser = cli.build_parser()
    for p in cli._subparsers(parser):
        text = p.format_help()
        flat = " ".join(text.split())
        assert "(default: None)" not in flat and "(default: )" not in flat, p.prog
        for chunk in re.split(r"\n  -", text):
            assert len(re.findall(r"default", " ".join(chunk.split()), re.I)) <= 1, \
                (p.prog, chunk)


@pytest.mark.slow
def test_the_installed_command_exits_1_on_an_error(tmp_path):
    proc = subprocess.run(kbsemcom_command() + ["check", "--kb", str(tmp_path / "k"),
                                                "--codec", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
