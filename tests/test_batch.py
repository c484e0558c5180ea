"""Batch entries, naming, finished markers, the batch command (render patched) and 2-rank sharding."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from typer.testing import CliRunner

from dysink_cli.cli.app import app
from dysink_cli.config import resolve_config, with_changes
from dysink_cli.errors import ConfigError, FfmpegError
from dysink_cli.render.batch import (
    DistInfo,
    EntryResult,
    default_output,
    done_marker,
    entry_state,
    init_distributed,
    partial_marker,
    read_entries,
    run_sharded,
    shard,
    slug,
    write_done,
)
from dysink_cli.render.job import RenderJob, RenderStats
from dysink_cli.render.workdir import JOB_FILE, job_fingerprint, work_dir_for
from dysink_cli.timeline import Segment

runner = CliRunner()


def test_txt_entries_skip_blank_and_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a red fox\n\n# a comment\n  a blue whale  \n")
    entries = read_entries(path)
    assert [(e.index, e.label, e.timeline.segments) for e in entries] == [
        (0, "p.txt line 1", (Segment(0.0, "a red fox"),)),
        (1, "p.txt line 4", (Segment(0.0, "a blue whale"),)),
    ]


def test_jsonl_entries(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "fox", "seconds": 3, "seed": 4, "output": "f.mkv", "preset": "tiny"}\n{"prompt": "cat"}\n'
    )
    first, second = read_entries(path)
    assert first.timeline.preset == "tiny" and second.timeline.preset is None
    assert (first.timeline.seconds, first.timeline.seed, first.timeline.output, first.timeline.preset) == (
        3.0,
        4,
        "f.mkv",
        "tiny",
    )
    assert second.timeline.seconds is None and second.label == "p.jsonl line 2"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"promt": "fox"}', r"p.jsonl line 2: unknown key 'promt'.*did you mean 'prompt'"),
        ('{"prompt": "fox", "seconds": "long"}', r"p.jsonl line 2: seconds = 'long' is not a number"),
        ('{"prompt": "fox",', r"p.jsonl line 2 is not valid JSON"),
        ('["fox"]', r"p.jsonl line 2 is not a JSON object"),
        ('{"seconds": 3}', r"p.jsonl line 2 has no prompt"),
    ],
)
def test_bad_jsonl_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message):
        read_entries(path)


def test_folder_of_timelines_and_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "b-walk.toml").write_text('[[segment]]\nat = 0\nprompt = "walk"\n')
    (tmp_path / "a-run.toml").write_text('seconds = 2\n[[segment]]\nat = 0\nprompt = "run"\n')
    entries = read_entries(tmp_path)
    assert [e.label for e in entries] == ["a-run.toml", "b-walk.toml"]
    assert default_output(entries[1]) == "0001-b-walk.mp4"
    with pytest.raises(ConfigError, match="must be .txt, .jsonl or a folder"):
        read_entries(tmp_path / "a-run.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        read_entries(tmp_path / "nope.txt")


def test_slug_and_default_names(tmp_path: Path) -> None:
    assert slug("A red fox, running!") == "a-red-fox-running"
    assert slug("!!!") == "video"
    assert len(slug("word " * 40)) <= 48 and not slug("word " * 40).endswith("-")
    path = tmp_path / "p.txt"
    path.write_text("a\nA Red Fox\n")
    assert default_output(read_entries(path)[1]) == "0001-a-red-fox.mp4"


def test_shard_is_round_robin_and_covers_everything() -> None:
    items = list(range(7))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for p in parts for i in p) == items
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def _job(out: Path, seed: int = 0, **output: int) -> RenderJob:
    cfg = resolve_config("tiny")
    cfg = with_changes(cfg, "output", **output) if output else cfg
    return RenderJob(segments=(Segment(0.0, "fox"),), seconds=2.0, output=out, config=cfg, seed=seed)


def test_entry_state(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    job = _job(out)
    assert entry_state(out, False, job) == "render"
    out.write_bytes(b"x")
    assert entry_state(out, False, job) == "foreign"
    assert entry_state(out, True, job) == "render"
    partial_marker(out).touch()
    assert entry_state(out, False, job) == "render"
    partial_marker(out).unlink()
    write_done(out, job, "p.txt line 1", 2.0, 0.1)
    assert entry_state(out, False, job) == "skip"
    assert entry_state(out, True, job) == "render"
    others = (_job(out, seed=1), _job(out, crf=23), replace(job, lossless=True), replace(job, seconds=3.0))
    assert [entry_state(out, False, other) for other in others] == ["changed"] * 4
    done_marker(out).write_text('{"label": "p.txt line 1", "seed": 0, "seconds": 2.0}\n')  # the old format
    assert entry_state(out, False, job) == "changed"
    done_marker(out).write_text("garbage")
    assert entry_state(out, False, job) == "changed"


def test_done_records_the_job_fingerprint(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    job = _job(out, seed=7)
    write_done(out, job, "p.txt line 1", 2.0, 0.1)
    record = json.loads(done_marker(out).read_text())
    assert record["fingerprint"] == json.loads(json.dumps(job_fingerprint(job)))
    assert record["fingerprint"]["config"]["output"]["crf"] == job.config.output.crf


class FakeRender:
    def __init__(self, fail_prompt: str = "") -> None:
        self.fail_prompt = fail_prompt
        self.jobs: list[RenderJob] = []

    def __call__(self, job: RenderJob, on_event) -> RenderStats:  # noqa: ANN001
        self.jobs.append(job)
        if job.segments[0].prompt == self.fail_prompt:
            raise FfmpegError("ffmpeg failed (exit code 1)", "free disk")
        assert job.overwrite  # the batch decided already; leftovers of ours may be replaced
        job.output.write_bytes(b"stub")
        return RenderStats(job.output, 33, 3, 0.1, 330.0, 0.0, 0.1)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRender:
    fake = FakeRender(fail_prompt="broken")
    monkeypatch.setattr("dysink_cli.render.render", fake)
    monkeypatch.delenv("DYSINK_WEIGHTS", raising=False)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    return fake


def test_batch_reports_failures_goes_on_and_resumes(fake: FakeRender, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red fox\nbroken\na blue whale\n")
    out = tmp_path / "out"
    first = runner.invoke(
        app, ["batch", str(prompts), "--out-dir", str(out), "--seconds", "2", "--seed", "3"]
    )
    assert first.exit_code == 1, first.output
    assert [j.segments[0].prompt for j in fake.jobs] == ["a red fox", "broken", "a blue whale"]
    assert all(j.seed == 3 and j.seconds == 2 for j in fake.jobs)
    assert "p.txt line 2 failed: ffmpeg failed" in " ".join(first.output.split())
    assert "batch summary" in first.output and "failed" in first.output
    assert (
        done_marker(out / "0000-a-red-fox.mp4").exists()
        and done_marker(out / "0002-a-blue-whale.mp4").exists()
    )
    assert partial_marker(out / "0001-broken.mp4").exists()
    fake.jobs.clear()
    fake.fail_prompt = ""
    again = ["batch", str(prompts), "--out-dir", str(out), "--seconds", "2", "--seed", "3"]  # same settings
    second = runner.invoke(app, again)
    assert second.exit_code == 0, second.output
    assert [j.segments[0].prompt for j in fake.jobs] == ["broken"]  # finished ones are skipped
    assert second.output.count("skipped") == 2


def test_batch_refuses_foreign_files_unless_overwrite(fake: FakeRender, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("fox\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "0000-fox.mp4").write_bytes(b"mine")
    refused = runner.invoke(app, ["batch", str(prompts), "--out-dir", str(out), "-s", "1"])
    assert refused.exit_code == 1 and "was not written by this batch" in refused.output and not fake.jobs
    forced = runner.invoke(app, ["batch", str(prompts), "--out-dir", str(out), "-s", "1", "--overwrite"])
    assert forced.exit_code == 0 and len(fake.jobs) == 1


def test_bad_entries_stop_the_batch_before_rendering(fake: FakeRender, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "a", "preset": "nosuch"}\n{"prompt": "b", "output": "x.mp4"}\n'
        '{"prompt": "c", "output": "x.mp4"}\n{"prompt": "d"}\n'
    )
    result = runner.invoke(app, ["batch", str(path), "--out-dir", str(tmp_path / "o"), "-s", "1"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and not fake.jobs
    assert "p.jsonl line 1: unknown preset 'nosuch'" in text
    assert "p.jsonl line 3: output x.mp4 is also used by p.jsonl line 2" in text
    no_len = runner.invoke(app, ["batch", str(tmp_path / "p.jsonl"), "--out-dir", str(tmp_path / "o")])
    assert no_len.exit_code == 2 and "no length" in no_len.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    info = DistInfo.from_env()
    init_distributed(info, use_cuda=False)

    def fake_run(entry: int) -> EntryResult:
        status = "failed" if entry == 3 else "done"
        return EntryResult(entry, f"entry {entry}", f"{entry}.mp4", status, rank=info.rank)

    results = run_sharded(list(range(5)), fake_run, info)
    Path(out, f"rank{rank}.json").write_text(json.dumps([[r.index, r.status, r.rank] for r in results]))
    import torch.distributed as dist

    dist.destroy_process_group()


@pytest.mark.skipif(sys.platform != "linux", reason="forks two gloo ranks")
def test_two_gloo_ranks_share_entries_and_gather_results(tmp_path: Path) -> None:
    # fork, not spawn: a spawned child re-imports torch (seconds); the ranks run no parallel kernels
    mp.start_processes(_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    expected = [[0, "done", 0], [1, "done", 1], [2, "done", 0], [3, "failed", 1], [4, "done", 0]]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected


def test_entry_values_beat_batch_flags(fake: FakeRender, tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "seconds": 3, "seed": 8, "preset": "tiny"}\n{"prompt": "b"}\n')
    preset = tmp_path / "wide.toml"
    preset.write_text('[model]\nname = "tiny"\n[engine]\nwindow_frames = 12\n')
    args = [
        "batch",
        str(path),
        "--out-dir",
        str(tmp_path / "o"),
        "-s",
        "1",
        "--seed",
        "2",
        "--preset",
        str(preset),
    ]
    result = runner.invoke(app, [*args, "--set", "dysink.top_k=4"])
    assert result.exit_code == 0, result.output
    a, b = fake.jobs
    assert (a.seconds, a.seed, a.config.engine.window_frames) == (3.0, 8, 9)  # the entry's values
    assert (b.seconds, b.seed, b.config.engine.window_frames) == (1.0, 2, 12)  # the batch defaults
    assert a.config.dysink.top_k == b.config.dysink.top_k == 4  # --set applies to every entry


def test_changed_settings_render_a_finished_entry_again(fake: FakeRender, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red fox\na blue whale\n")
    out = tmp_path / "out"
    args = ["batch", str(prompts), "--out-dir", str(out), "-s", "2"]
    assert runner.invoke(app, args).exit_code == 0 and len(fake.jobs) == 2
    fake.jobs.clear()
    same = runner.invoke(app, args, terminal_width=200)
    assert same.exit_code == 0 and not fake.jobs and same.output.count("finished earlier") == 2
    changed = runner.invoke(app, [*args, "--crf", "23"], terminal_width=200)
    assert changed.exit_code == 0, changed.output
    assert [j.config.output.crf for j in fake.jobs] == [23, 23] and all(j.overwrite for j in fake.jobs)
    assert changed.output.count("settings changed since it finished: rendered again") == 2
    record = json.loads(done_marker(out / "0000-a-red-fox.mp4").read_text())
    assert record["fingerprint"] == json.loads(json.dumps(job_fingerprint(fake.jobs[0])))
    fake.jobs.clear()
    assert runner.invoke(app, [*args, "--crf", "23"]).exit_code == 0 and not fake.jobs  # now the same


def test_an_old_done_marker_counts_as_changed(fake: FakeRender, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("fox\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "0000-fox.mp4").write_bytes(b"old video")
    done_marker(out / "0000-fox.mp4").write_text('{"label": "p.txt line 1", "seed": 0, "seconds": 1}\n')
    result = runner.invoke(app, ["batch", str(prompts), "--out-dir", str(out), "-s", "1"], terminal_width=200)
    assert result.exit_code == 0 and len(fake.jobs) == 1 and "rendered again" in result.output
    assert (out / "0000-fox.mp4").read_bytes() == b"stub"


class ResumingFake(FakeRender):
    """Records each job's overwrite flag instead of insisting on it."""

    def __call__(self, job: RenderJob, on_event) -> RenderStats:  # noqa: ANN001
        self.jobs.append(job)
        job.output.write_bytes(b"stub")
        return RenderStats(job.output, 33, 3, 0.1, 330.0, 0.0, 0.1)


@pytest.mark.parametrize(("same", "resumed"), [(True, True), (False, False)])
def test_an_interrupted_entry_resumes_only_with_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, same: bool, resumed: bool
) -> None:
    fake = ResumingFake()
    monkeypatch.setattr("dysink_cli.render.render", fake)
    monkeypatch.delenv("DYSINK_WEIGHTS", raising=False)
    prompts = tmp_path / "p.txt"
    prompts.write_text("fox\n")
    out = tmp_path / "out"
    video = out / "0000-fox.mp4"
    work = work_dir_for(video)
    work.mkdir(parents=True)
    video.write_bytes(b"half")
    partial_marker(video).touch()
    started = replace(_job(video, seed=0 if same else 5), config=resolve_config("toy"))  # the default
    (work / JOB_FILE).write_text(json.dumps(job_fingerprint(replace(started, seconds=1.0))))
    result = runner.invoke(app, ["batch", str(prompts), "--out-dir", str(out), "-s", "1"], terminal_width=200)
    assert result.exit_code == 0, result.output
    (job,) = fake.jobs
    assert job.overwrite is not resumed
    assert ("settings changed since it was interrupted: started again" in result.output) is not same
