"""Commands that never lose work and fail in one line: results a user made are replaced only with
--force, outputs are checked before the work starts, filesystem faults (an --out that is a file, a
read-only directory, a full disk) end in one `s3ta <command>: error: ...` line, and help texts and
messages say what is valid. Every command runs through `s3ta.cli.main`, as a user runs it."""

from __future__ import annotations

import argparse
import csv
import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.evaluation_runs import make_config, write_checkpoint, write_run
from s3ta import envs
from s3ta.analysis.recording import load_recording
from s3ta.cli import UsageError, command, main


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `s3ta ARGV`."""
    capsys.readouterr()
    try:
        status = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str, name: str) -> str:
    """The single line on stderr, checked to follow the convention."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"s3ta {name}: error: "), lines[0]
    return lines[0]


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    write_checkpoint(path, make_config("catch", "s3ta-small"), frames=10)
    return path


def no_play(monkeypatch):
    """Make playing an episode fail loudly: the command must stop before it."""
    import s3ta.evaluation.evaluate as evaluate

    def play(*args, **kwargs):
        raise AssertionError("episodes were played before the output was checked")

    monkeypatch.setattr(evaluate, "play", play)


# --- item 8: nothing a user made is overwritten silently ------------------------------------------

def test_eval_keeps_an_earlier_evaluation_unless_forced(run_dir, capsys):
    argv = ["eval", run_dir, "--episodes", "2", "--no-progress"]
    assert run(argv, capsys)[0] == 0
    summary = run_dir / "eval" / "summary.json"
    earlier = summary.read_text()
    status, _, err = run([*argv, "--seed", "7"], capsys)
    assert status == 2
    assert "--force" in one_error_line(err, "eval") and summary.read_text() == earlier
    assert run([*argv, "--seed", "7", "--force"], capsys)[0] == 0
    assert json.loads(summary.read_text())["seed"] == 7


def test_explain_record_keeps_a_recording_unless_forced_and_then_drops_what_was_made_from_it(tmp_path, capsys):
    rec = tmp_path / "rec"
    argv = ["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--max-steps", "4", "--out", rec]
    assert run(argv, capsys)[0] == 0
    assert run(["explain", "whatwhere", rec], capsys)[0] == 0
    (rec / "video.mp4").write_bytes(b"a video of the old recording")
    before = (rec / "steps.npz").read_bytes()

    status, _, err = run([*argv, "--seed", "3"], capsys)
    assert status == 2 and "--force" in one_error_line(err, "explain record")
    assert (rec / "steps.npz").read_bytes() == before and (rec / "analysis" / "whatwhere.json").exists()

    assert run([*argv, "--seed", "3", "--force"], capsys)[0] == 0
    assert sorted(p.name for p in rec.iterdir()) == ["agent.pt", "recording.json", "steps.npz"]
    assert load_recording(rec).meta["source"]["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]  # no staging or old copy left behind


def test_explain_record_never_writes_into_a_directory_that_holds_no_recording(run_dir, capsys):
    for force in ([], ["--force"]):
        status, _, err = run(["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--out", run_dir,
                              *force], capsys)
        assert status == 2 and "holds no recording" in one_error_line(err, "explain record")
    assert (run_dir / "config.json").exists() and not (run_dir / "recording.json").exists()


def test_report_keeps_a_report_unless_forced_and_then_drops_its_old_plots(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "catch", "s3ta-small", 0, [1.0, 0.5])
    out = tmp_path / "report"
    argv = ["report", runs, "--out", out, "--bootstrap-reps", "100"]
    assert run(argv, capsys)[0] == 0
    old_plot = out / "plots" / "curve-pong.png"  # a plot of a game the new report does not have
    old_plot.write_bytes(b"png")
    earlier = (out / "report.md").read_text()
    status, _, err = run([*argv, "--title", "new"], capsys)
    assert status == 2 and "--force" in one_error_line(err, "report")
    assert (out / "report.md").read_text() == earlier and old_plot.exists()
    assert run([*argv, "--title", "new", "--force"], capsys)[0] == 0
    assert (out / "report.md").read_text().startswith("# new") and not old_plot.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]  # no staging directory left


def test_a_full_disk_while_replacing_a_report_keeps_the_old_one(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    write_run(runs, "catch", "s3ta-small", 0, [1.0, 0.5])
    out = tmp_path / "report"
    argv = ["report", runs, "--out", out, "--bootstrap-reps", "100"]
    assert run(argv, capsys)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    status, _, err = run([*argv, "--force", "--title", "new"], capsys)
    assert status == 1 and "No space left on device" in one_error_line(err, "report")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]


# --- item 9: ordinary filesystem faults are one line, and found before the work -------------------

def test_every_command_says_in_one_line_that_out_is_a_file(run_dir, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("a user's file")
    rec = tmp_path / "rec"
    assert run(["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--max-steps", "3", "--out", rec],
               capsys)[0] == 0
    runs = tmp_path / "runs"
    write_run(runs, "catch", "s3ta-small", 0, [1.0])
    commands = {
        "eval": ["eval", run_dir, "--episodes", "1", "--out", afile],
        "explain record": ["explain", "record", run_dir, "--out", afile],
        "explain whatwhere": ["explain", "whatwhere", rec, "--out", afile],
        "explain saliency": ["explain", "saliency", rec, "--out", afile / "sub"],
        "explain video": ["explain", "video", rec, "--out", afile / "v.mp4"],
        "explain view": ["explain", "view", rec, "--out", afile / "v.html"],
        "report": ["report", runs, "--out", afile],
        "experiment": ["experiment", "--envs", "catch", "--agents", "s3ta-small", "--seeds", "0",
                       "--total-frames", "10", "--out", afile],
        "demo": ["demo", "--out", afile],
    }
    for name, argv in commands.items():
        status, _, err = run(argv, capsys)
        line = one_error_line(err, name)
        assert status == 1 and str(afile) in line and ("not a directory" in line.lower()), (name, line)
    assert afile.read_text() == "a user's file"


def test_eval_checks_that_it_can_write_before_it_plays(run_dir, tmp_path, capsys, monkeypatch):
    import s3ta.outputs

    no_play(monkeypatch)
    afile = tmp_path / "afile"
    afile.touch()
    status, _, err = run(["eval", run_dir, "--episodes", "1", "--out", afile], capsys)
    assert status == 1 and "not a directory" in one_error_line(err, "eval")

    def read_only(*args, dir=None, **kwargs):  # as root, chmod alone would not stop the write
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / ".s3ta-write-test"))

    monkeypatch.setattr(s3ta.outputs.tempfile, "NamedTemporaryFile", read_only)
    status, _, err = run(["eval", run_dir, "--episodes", "1", "--out", tmp_path / "ro"], capsys)
    assert status == 1 and "Permission denied" in one_error_line(err, "eval")


def test_a_full_disk_is_one_line_and_keeps_the_earlier_evaluation(run_dir, capsys, monkeypatch):
    argv = ["eval", run_dir, "--episodes", "2", "--no-progress"]
    assert run(argv, capsys)[0] == 0
    eval_dir = run_dir / "eval"
    earlier = {p.name: p.read_bytes() for p in eval_dir.iterdir()}

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)
    status, _, err = run([*argv, "--seed", "5", "--force"], capsys)
    assert status == 1 and "No space left on device" in one_error_line(err, "eval")
    assert {p.name: p.read_bytes() for p in eval_dir.iterdir()} == earlier  # no half-written or .tmp file


def test_a_full_disk_while_re_recording_keeps_the_old_recording(tmp_path, capsys, monkeypatch):
    rec = tmp_path / "rec"
    argv = ["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--max-steps", "3", "--out", rec]
    assert run(argv, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in rec.iterdir()}

    def full(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "savez_compressed", full)
    status, _, err = run([*argv, "--force", "--seed", "1"], capsys)
    assert status == 1 and "No space left on device" in one_error_line(err, "explain record")
    assert {p.name: p.read_bytes() for p in rec.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


# --- item 11 (part): experiment validates every env id first --------------------------------------

def test_experiment_rejects_an_unknown_env_before_creating_anything(tmp_path, capsys):
    out = tmp_path / "exp"
    status, _, err = run(["experiment", "--envs", "catch", "pongg", "--agents", "s3ta-small", "--seeds", "0",
                          "--total-frames", "10", "--out", out], capsys)
    line = one_error_line(err, "experiment")
    assert status == 2 and "'pongg'" in line and "'pong'" in line and "`s3ta list`" in line
    assert not out.exists()
    with pytest.raises(ValueError, match="s3ta list"):
        envs.make("no-such-env", 1)


# --- item 13: one convention, valid ranges, help texts --------------------------------------------

def test_bad_input_exits_2_with_the_command_name(tmp_path, capsys):
    status, _, err = run(["explain", "record", "--env", "catch", "--out", tmp_path / "x"], capsys)
    assert status == 2 and "CHECKPOINT or --agent" in one_error_line(err, "explain record")
    status, _, err = run(["eval", tmp_path, "--episodes", "1"], capsys)
    assert status == 2 and "no checkpoint" in one_error_line(err, "eval")


def test_only_expected_errors_are_turned_into_one_line():
    @command("x")
    def bad_input(args):
        raise UsageError("--n must be > 0, got 0")

    @command("x")
    def bug(args):
        raise KeyError("a bug keeps its traceback")

    @command("x", faults=(ArithmeticError,))
    def diverged(args):
        raise ZeroDivisionError("the loss became NaN")

    assert bad_input(None) == 2 and diverged(None) == 1
    with pytest.raises(KeyError):
        bug(None)


@pytest.mark.parametrize("argv, expected", [
    (["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--out", "x", "--episodes", "0"],
     "argument --episodes: must be >= 1, got 0"),
    (["explain", "video", "rec", "--opacity", "1.5"], "argument --opacity: must be in [0, 1], got 1.5"),
    (["explain", "video", "rec", "--fps", "0"], "argument --fps: must be > 0, got 0"),
    (["explain", "intervene", "rec", "--percent", "0"], "argument --percent: must be in (0, 100], got 0"),
    (["demo", "--total-frames", "0"], "argument --total-frames: must be >= 1, got 0"),
    (["eval", "run", "--episodes", "-1"], "argument --episodes: must be >= 1, got -1"),
    (["train", "--out", "x", "--mode", "threads"], "argument --mode: invalid choice: 'threads'"),
])
def test_bad_values_name_the_flag_and_the_valid_range(argv, expected, capsys):
    status, _, err = run(argv, capsys)
    assert status == 2 and expected in err.splitlines()[-1]
    assert err.splitlines()[-1].startswith(f"s3ta {' '.join(argv[:2 if argv[0] == 'explain' else 1])}: error: ")


def help_text(argv: list[str], capsys) -> str:
    status, out, _ = run([*argv, "--help"], capsys)
    assert status == 0
    return " ".join(out.split())  # argparse wraps lines


def test_help_texts(capsys):
    for name in ("eval", "report"):
        text = help_text([name], capsys)
        assert "95% " in text and "%%" not in text and "--force" in text
    record = help_text(["explain", "record"], capsys)
    assert "s3ta evaluate" not in record and "`s3ta eval`" in record and "{paper,machado}" in record
    video = help_text(["explain", "video"], capsys)
    assert "--fps FPS frames per second" in video and "--opacity OPACITY opacity of the attention overlay" in video
    assert "Train s3ta-small on the built-in catch task" in help_text(["demo"], capsys)
    for name in ("train", "experiment"):
        text = help_text([name], capsys)
        assert "--mode {parallel,serial}" in text and "--protocol {paper,machado}" in text
    assert "--backend {local,ray}" in help_text(["train"], capsys)


def test_building_the_parser_loads_no_torch():
    """`s3ta --help` (every command's parser) must not pay for importing torch: heavy imports belong
    inside the handlers. Run in a fresh interpreter, as this one has torch loaded already."""
    code = ("import sys, s3ta.cli; s3ta.cli.build_parser(); "
            "loaded = sorted(m for m in sys.modules if m.startswith('s3ta')); "
            "assert 'torch' not in sys.modules, f'torch loaded with {loaded}'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]


def test_demo_prints_an_estimate_scaled_to_total_frames(tmp_path, capsys, monkeypatch):
    import s3ta.training.loop

    def stopped_train(config, out, resume=False, **kwargs):
        return {"finished": False, "frames": 0}

    monkeypatch.setattr(s3ta.training.loop, "train", stopped_train)
    printed = {}
    for frames in (25_000, 250_000, 1_000_000):
        status, out, _ = run(["demo", "--out", tmp_path / str(frames), "--total-frames", frames], capsys)
        assert status == 130
        printed[frames] = out.splitlines()[0]
    # docs/benchmarks.md: the demo's 250,000 frames train in about 200 s on 2 cores
    assert "25,000 frames (about 20 seconds on 2 CPU cores)" in printed[25_000]
    assert "250,000 frames (about 3 minutes on 2 CPU cores)" in printed[250_000]
    assert "1,000,000 frames (about 13 minutes on 2 CPU cores)" in printed[1_000_000]


def test_env_mismatch_names_observations_and_actions(run_dir, capsys):
    status, _, err = run(["eval", run_dir, "--env", "find-target", "--episodes", "1"], capsys)
    line = one_error_line(err, "eval")
    assert status == 2
    assert re.search(r"gives observations \(.*\) and \d+ actions, but .* built for observations \(.*\) and \d+ "
                     r"actions", line), line


def test_eval_log_numbers_episodes_as_the_table_and_csv_do(run_dir, capsys):
    status, out, err = run(["eval", run_dir, "--episodes", "5", "--num-envs", "2"], capsys)  # stderr: not a tty
    assert status == 0
    logged = {}
    for line in err.splitlines():
        match = re.fullmatch(r"eval catch: episode (\d+) \(env slot (\d+)\) return (\S+), (\d+) steps \[\d/5 done\]",
                             line)
        assert match, line
        logged[int(match[1])] = (int(match[2]), float(match[3]), int(match[4]))
    with open(run_dir / "eval" / "episodes.csv", newline="") as f:
        saved = {int(r["episode"]): (int(r["env_slot"]), float(r["return"]), int(r["length"]))
                 for r in csv.DictReader(f)}
    assert logged == saved and sorted(saved) == [0, 1, 2, 3, 4]
    table = [line.split()[:2] for line in out.splitlines()[1:6]]
    assert table == [[str(i), str(saved[i][0])] for i in range(5)]


def test_viewer_and_video_number_episodes_as_recording_json_and_the_episodes_flag(tmp_path, capsys):
    from s3ta.viz.video import FrameComposer
    from s3ta.viz.viewer import viewer_data
    from s3ta.viz.viewer_template import TEMPLATE

    rec = tmp_path / "rec"
    assert run(["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--episodes", "2", "--out", rec],
               capsys)[0] == 0
    recording = load_recording(rec)
    second = recording.episode_slice(1)
    assert recording.meta["episodes"][1]["index"] == 1
    data = viewer_data(recording, np.arange(recording.num_steps)[second])
    assert set(data["episode"]) == {1} and data["episodeStep"][0] == 0
    assert '"episode " + D.episode[t] + " step " + D.episodeStep[t]' in TEMPLATE
    header = FrameComposer(recording).header_text(second.start)
    assert header.startswith("episode 1 step 0 ")


# --- issue 37, item 8: what a newcomer tripped over ----------------------------------------------

def corrupt_newest(run_dir: Path) -> Path:
    """A second, newer checkpoint cut short, as by a machine lost while writing it."""
    newest = write_checkpoint(run_dir, make_config("catch", "s3ta-small"), frames=20)
    newest.write_bytes(newest.read_bytes()[:100])
    return newest


def test_eval_and_record_fall_back_from_a_corrupt_newest_checkpoint_as_resume_does(run_dir, tmp_path, capsys):
    newest = corrupt_newest(run_dir)
    status, out, err = run(["eval", run_dir, "--episodes", "1", "--no-progress"], capsys)
    assert status == 0, err
    assert f"skipped unreadable newer checkpoint(s) {newest.name}" in out
    assert json.loads((run_dir / "eval" / "summary.json").read_text())["checkpoint_frames"] == 10
    status, _, err = run(["explain", "record", run_dir, "--max-steps", "2", "--out", tmp_path / "rec"], capsys)
    assert status == 0 and newest.name in err
    assert load_recording(tmp_path / "rec").meta["source"]["counters"]["frames"] == 10
    status, _, err = run(["eval", newest, "--episodes", "1"], capsys)  # a file named directly must load
    assert status == 2 and "corrupt" in one_error_line(err, "eval")


def test_a_corrupt_checkpoint_does_not_count_towards_keep(run_dir):
    """keep=2 with a good checkpoint at 10 frames and a corrupt one at 30: saving at 20 keeps 10 and 20
    (the two that load); counting the corrupt file would have deleted the one at 10."""
    from s3ta.training.checkpoint import list_checkpoints

    config = make_config("catch", "s3ta-small")
    corrupt = write_checkpoint(run_dir, config, frames=30)
    corrupt.write_bytes(b"\x00 a machine stopped here")
    write_checkpoint(run_dir, config, frames=20)  # keep=2
    assert [p.name for p in list_checkpoints(run_dir)] == [
        "ckpt-000000000010.pt", "ckpt-000000000020.pt", "ckpt-000000000030.pt"]
    write_checkpoint(run_dir, config, frames=40)  # now 40 and 20 are the newest two that load
    assert [p.name for p in list_checkpoints(run_dir)] == ["ckpt-000000000020.pt", "ckpt-000000000030.pt",
                                                           "ckpt-000000000040.pt"]


def test_explain_record_checks_a_read_only_out_before_it_plays(run_dir, tmp_path, capsys, monkeypatch):
    """An existing empty DIR that takes no files (read-only): one line, exit 1, before any step is
    recorded, and no hidden .DIR.partial left beside it."""
    import s3ta.analysis.recording as recording_module
    import s3ta.outputs

    out = tmp_path / "ro"
    out.mkdir()
    real = s3ta.outputs.tempfile.NamedTemporaryFile

    def read_only(*args, dir=None, **kwargs):  # as root, chmod alone would not stop the write
        if Path(dir) == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(out / ".s3ta-write-test"))
        return real(*args, dir=dir, **kwargs)

    def record(*args, **kwargs):
        raise AssertionError("steps were recorded before the output was checked")

    monkeypatch.setattr(s3ta.outputs.tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(recording_module, "record", record)
    status, _, err = run(["explain", "record", run_dir, "--max-steps", "2", "--out", out], capsys)
    assert status == 1 and "Permission denied" in one_error_line(err, "explain record")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "run"] and not any(out.iterdir())


def test_a_recording_that_cannot_move_into_its_directory_leaves_no_partial_folder(tmp_path, monkeypatch):
    from s3ta.analysis.recording import record as record_steps

    env = envs.make("catch", 1, seed=0)
    from s3ta import agents

    recording = record_steps(agents.build("s3ta-small", env.observation_shape, env.num_actions), env, 1,
                             max_steps=2)
    out = tmp_path / "rec"
    out.mkdir()
    real_rename = Path.rename

    def rename(self, target):
        if Path(target).parent == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PermissionError):
        recording.save(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"] and not any(out.iterdir())


def all_command_paths() -> list[list[str]]:
    """Every command and subcommand of `s3ta`, as argv prefixes: ["eval"], ["explain", "record"], ..."""
    from s3ta.cli import build_parser

    def walk(parser, prefix):
        found = [prefix] if prefix else []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += walk(sub, [*prefix, name])
        return found

    return walk(build_parser(), [])


def test_every_parser_says_its_error_in_one_line_and_points_to_its_help(capsys):
    paths = all_command_paths()
    assert ["explain", "record"] in paths and ["zoo", "export"] in paths and len(paths) > 20
    for path in [[], *paths]:
        status, _, err = run([*path, "--no-such-flag"], capsys)
        name = " ".join(["s3ta", *path])
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1, (path, err)
        assert lines[0].startswith(f"{name}: error: ") and lines[0].endswith(f"; see {name} --help"), lines[0]
    status, _, err = run(["eval", "run", "--episodes", "0"], capsys)
    assert status == 2 and err == "s3ta eval: error: argument --episodes: must be >= 1, got 0; see s3ta eval --help\n"


def test_inject_prints_rounded_numbers(tmp_path, capsys):
    rec = tmp_path / "rec"
    assert run(["explain", "record", "--agent", "s3ta-small", "--env", "catch", "--max-steps", "6", "--out", rec],
               capsys)[0] == 0
    status, out, err = run(["explain", "inject", rec, "--onset", "1"], capsys)
    assert status == 0, err
    summary = out.splitlines()[0]
    assert "mean_kl=" in summary and "mean_mass_injected=[" in summary
    numbers = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", summary)
    digits = [re.sub(r"\D", "", n.split("e")[0]).lstrip("0") for n in numbers]  # significant digits
    assert numbers and all(len(d) <= 4 for d in digits), summary
