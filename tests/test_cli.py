"""The shared CLI: bad input ends in one line naming the flag, before anything is compiled,
and leaves the workdir as it was."""

import pytest

from experiments import _cli, long_memory
from tests.train import helpers

TINY = "experiments/configs/long_memory.py:tiny"


def cli(argv, capsys):
    """Runs the long_memory entry point in-process; returns (exit status, stderr)."""
    with pytest.raises(SystemExit) as e:
        _cli.main({"train": long_memory.run}, name="long_memory", argv=["long_memory", *argv])
    err = capsys.readouterr().err.strip()
    return e.value.code, err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--config.steps=-5"], "--config.steps=-5: must be a positive int"),
        (
            ["--config.cell=lstn"],
            "--config.cell='lstn': unknown cell 'lstn' (did you mean 'lstm'?)",
        ),
        (["--config.task=adder"], "--config.task='adder': unknown task 'adder'"),
        (["--config.seq_len=3", "--config.task=temporal_order"], "--config.seq_len=3"),
        (["--config.cell_options=forget_bias"], "--config.cell_options='forget_bias'"),
        (["--config.cell_options=nope=1"], "unknown option(s) ['nope']"),
        (["--config.optimizer=adan"], "--config.optimizer='adan': expected one of"),
        (["--config.stpes=3"], 'Did you mean "steps"'),
        (["--config.steps=abc"], "--config.steps=abc"),
    ],
)
def test_bad_config_values_fail_in_one_line_before_anything_is_written(
    tmp_path, capsys, args, expected
):
    workdir = tmp_path / "run"  # a new workdir: not even the empty directory is left behind
    code, err = cli([f"--workdir={workdir}", f"--config={TINY}", *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_workdir_stays_after_a_bad_config_value(tmp_path, capsys):
    code, err = cli([f"--workdir={tmp_path}", f"--config={TINY}", "--config.steps=-5"], capsys)
    assert code == 2 and "--config.steps=-5" in err
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_workdir_that_is_a_file_is_refused_and_left_alone(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    code, err = cli([f"--workdir={f}"], capsys)
    assert code == 2 and "exists and is not a directory" in err and "\n" not in err
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_flags_and_every_config_value_this_command_would_use(capsys, flag):
    with pytest.raises(SystemExit) as e:
        argv = ["long_memory", flag, f"--config={TINY}", "--config.steps=7"]
        _cli.main({"train": long_memory.run}, name="long_memory", argv=argv)
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.startswith("usage: python -m experiments.long_memory --workdir=DIR")
    assert long_memory.__doc__.split("\n")[0] in out  # what the experiment does
    assert "--workdir: Directory" in out and "--mode: What to do. One of: train." in out
    assert "  --config.steps=7\n" in out and "  --config.task='adding'\n" in out


def test_missing_workdir_flag(capsys):
    code, err = cli([f"--config={TINY}"], capsys)
    assert code == 2 and err == "error: --workdir is required"


def test_missing_config_file_and_file_without_get_config(tmp_path, capsys):
    code, err = cli([f"--workdir={tmp_path / 'w'}", "--config=/nonexistent/cfg.py"], capsys)
    assert code == 2 and "No such file" in err and "\n" not in err
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    code, err = cli([f"--workdir={tmp_path / 'w'}", f"--config={bad}"], capsys)
    assert code == 2 and "get_config" in err and "\n" not in err
    assert not (tmp_path / "w").exists() or list((tmp_path / "w").iterdir()) == []


def test_batch_not_divisible_by_the_devices_fails_before_compiling(tmp_path):
    proc = helpers.start(
        [
            "-m",
            "experiments.long_memory",
            f"--workdir={tmp_path}",
            f"--config={TINY}",
            "--config.batch_size=12",
        ],
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_LOG_COMPILES="1",
    )
    code, out = helpers.finish(proc, timeout=120)
    assert code == 2, out
    assert "error: --config.batch_size=12: not divisible by the 8 devices" in out
    assert "Compiling" not in out and list(tmp_path.iterdir()) == []
