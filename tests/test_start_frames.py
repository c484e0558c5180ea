"""Starting from given frames: --image (the picture is the output's first frame, after the VAE
round trip) and --continue (a video's last whole blocks are clean context); bad inputs are one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dysink_cli.cli.app import app
from dysink_cli.config import resolve_config
from dysink_cli.io.ffmpeg import FfmpegSink, ffmpeg_exe, read_frames
from dysink_cli.model.tiny import TINY_SEED, TINY_VAE, init_untrained
from dysink_cli.model.vae import WanVAE
from dysink_cli.render import RenderJob, render
from dysink_cli.render.job import StartFrames
from dysink_cli.render.start import blocks_in, frames_for_blocks
from dysink_cli.render.workdir import job_fingerprint
from dysink_cli.timeline import Segment


def job(out: Path, start: StartFrames | None, seconds: float = 2.0) -> RenderJob:
    cfg = resolve_config("tiny")
    return RenderJob(
        (Segment(0.0, "a fox"),), seconds, out, cfg, seed=2, device="cpu", lossless=True, start=start
    )


def frames(path: Path) -> list[np.ndarray]:
    return list(read_frames(path))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "base.mkv"
    render(job(out, None), lambda e: None)
    return out


@pytest.fixture(scope="module")
def picture(base: Path) -> Path:
    png = base.with_name("pic.png")
    cmd = [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(base), "-frames:v", "1", str(png)]
    subprocess.run(cmd, check=True)
    return png


def test_block_arithmetic() -> None:
    assert [frames_for_blocks(k) for k in (1, 2, 3)] == [9, 21, 33]
    assert [blocks_in(n) for n in (0, 8, 9, 20, 21, 33, 40)] == [0, 0, 1, 1, 2, 3, 3]


def test_the_picture_is_the_first_frame_after_the_vae_round_trip(tmp_path: Path, picture: Path) -> None:
    out = tmp_path / "img.mkv"
    render(job(out, StartFrames(picture, "image")), lambda e: None)
    got = frames(out)
    pic = torch.from_numpy(np.array(next(iter(read_frames(picture))))).permute(2, 0, 1).float() / 127.5 - 1
    vae = init_untrained(WanVAE(TINY_VAE), TINY_SEED + 1).eval()  # the tiny demo's VAE
    held = pic[:, None].expand(3, 9, *pic.shape[1:])[None]  # the picture held for one block
    round_trip = vae.decode(vae.encode(held))[0, 0]
    want = ((round_trip.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).to(torch.uint8).numpy()
    assert len(got) == 33 and np.abs(got[0].astype(int) - want.astype(int)).max() <= 1


def test_continue_writes_only_new_frames_unless_include_input(tmp_path: Path, base: Path) -> None:
    only_new, with_input = tmp_path / "new.mkv", tmp_path / "all.mkv"
    render(job(only_new, StartFrames(base, "video")), lambda e: None)
    render(job(with_input, StartFrames(base, "video", include_input=True)), lambda e: None)
    new, everything = frames(only_new), frames(with_input)
    context = frames_for_blocks(3)  # 33 frames of base: 3 blocks of context (the window's 9 frames)
    assert len(new) == 36 and len(everything) == context + 36
    assert all(np.array_equal(a, b) for a, b in zip(new, everything[context:], strict=True))
    assert not np.array_equal(everything[0], new[0])


def test_the_start_is_part_of_the_resume_fingerprint(tmp_path: Path, base: Path, picture: Path) -> None:
    a = job_fingerprint(job(tmp_path / "a.mkv", StartFrames(base, "video")))
    b = job_fingerprint(job(tmp_path / "a.mkv", StartFrames(picture, "image")))
    assert (
        a["start"]["kind"] == "video"
        and a != b
        and "start" not in job_fingerprint(job(tmp_path / "a.mkv", None))
    )


def write_video(path: Path, count: int, width: int = 64, height: int = 48) -> Path:
    with FfmpegSink(path, width, height, 16, lossless=True) as sink:
        sink.write(np.zeros((count, height, width, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("missing image", ["--image", "nope.png"], "does not exist"),
        ("image is a folder", ["--image", "."], "is a folder"),
        ("not an image", ["--image", "notes.txt"], "cannot be read as an image"),
        ("wrong aspect ratio", ["--image", "tall.mkv"], "not the aspect ratio of the render"),
        ("too short to continue", ["--continue", "short.mkv"], "one block of context needs 9"),
        ("both", ["--image", "short.mkv", "--continue", "short.mkv"], "both given"),
        ("include without continue", ["--include-input"], "needs --continue"),
        ("continue the output itself", ["--continue", "out.mkv", "--overwrite"], "is the output file"),
        ("a .npy of floats", ["--continue", "floats.npy"], "float32 (9, 48, 64, 3), not uint8"),
        ("a .npy too short", ["--continue", "short.npy"], "one block of context needs 9"),
    ],
)
def test_bad_start_frames_are_one_line(
    tmp_path: Path, monkeypatch, name: str, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("not a picture")
    write_video(Path("short.mkv"), 5)
    write_video(Path("tall.mkv"), 9, width=48, height=64)
    np.save("floats.npy", np.zeros((9, 48, 64, 3), dtype=np.float32))
    np.save("short.npy", np.zeros((5, 48, 64, 3), dtype=np.uint8))
    if "out.mkv" in args:
        write_video(Path("out.mkv"), 9)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(
        app, ["render", "-p", "fox", "-s", "1", "-o", "out.mkv", "--device", "cpu", *args]
    )
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("plan:")]
    assert result.exit_code == 2, result.stderr
    assert message in lines[0] and len(lines) <= 2 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind


def test_npy_frames_start_exactly_as_the_same_lossless_video(tmp_path: Path, base: Path) -> None:
    """A .npy of uint8 frames (numpy.save) is read without ffmpeg and gives the same start as the
    lossless video holding those frames; a picture may be one (H, W, 3) array."""
    from dysink_cli.render.start import load_start

    video = np.stack(frames(base))
    array = tmp_path / "frames.npy"
    np.save(array, video)
    want = load_start(StartFrames(base, "video"), 64, 48, max_blocks=2)
    got = load_start(StartFrames(array, "video"), 64, 48, max_blocks=2)
    assert got.shape == want.shape == (1, 3, 21, 48, 64) and torch.equal(got, want)
    np.save(tmp_path / "pic.npy", video[0])
    held = load_start(StartFrames(tmp_path / "pic.npy", "image"), 64, 48, max_blocks=2)
    assert held.shape == (1, 3, 9, 48, 64) and torch.equal(held[:, :, 0], held[:, :, 8])


def test_a_npy_that_is_not_uint8_frames_gets_a_one_line_error(tmp_path: Path) -> None:
    from dysink_cli.errors import ConfigError
    from dysink_cli.render.start import load_start

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((9, 48, 64, 3), dtype=np.float32))
    with pytest.raises(ConfigError) as err:
        load_start(StartFrames(bad, "video"), 64, 48, max_blocks=1)
    assert "float32 (9, 48, 64, 3), not uint8" in err.value.message and ".npy" in err.value.hint
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ConfigError, match="numpy cannot read it"):
        load_start(StartFrames(tmp_path / "junk.npy", "video"), 64, 48, max_blocks=1)


@pytest.fixture(scope="module")
def image_start(tmp_path_factory, picture: Path) -> list[np.ndarray]:
    out = tmp_path_factory.mktemp("image") / "reference.mkv"
    render(job(out, StartFrames(picture, "image")), lambda e: None)
    return frames(out)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["self-forcing", "longlive", "dysink", "rolling-sink", "lol"])
def test_every_policy_preset_starts_from_a_picture(
    tmp_path: Path, picture: Path, image_start: list[np.ndarray], preset: str
) -> None:
    """--image through each released policy (the tiny model at its size): the render completes and
    the picture opens it, the same first frame the tiny demo's own loop gives it."""
    tiny = ('model.name="tiny"', "output.width=64", "output.height=48", "output.fps=16")
    cfg = resolve_config(preset, tiny)
    out = tmp_path / f"{preset}.mkv"
    segments = (Segment(0.0, "a fox"),)
    start = StartFrames(picture, "image")
    request = RenderJob(segments, 2.0, out, cfg, seed=2, device="cpu", lossless=True, start=start)
    render(request, lambda e: None)
    got = frames(out)
    assert len(got) == len(image_start) == 33
    assert np.abs(got[0].astype(int) - image_start[0].astype(int)).max() <= 1
