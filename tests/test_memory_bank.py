"""MemoryBank tiers (device LRU, RAM budget, disk files): tier-independent retrieval, FIFO caps,
counters, fp8 storage, checkpoint and reopen, write errors, the spill thread, parity forced to disk."""

from __future__ import annotations

import errno
import logging
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import Tensor

from dysink_cli.engine.memory import pinned
from dysink_cli.engine.memory import store as bank_store
from dysink_cli.engine.memory.bank import BankEntry, MemoryBank
from dysink_cli.engine.memory.store import Payload, SpillWriter
from dysink_cli.errors import ConfigError, OutputError, ResumeError
from tests.conftest import FIXTURES

SHAPE = (2, 1, 6, 2, 4)  # (L, B, n, H, D)


def reopen(state: dict, work_dir: Path, **options) -> MemoryBank:
    """A fresh bank on the work folder, loaded from a checkpoint's state."""
    bank = MemoryBank(work_dir=work_dir, **options)
    bank.load_state(state)
    return bank


def make_entry(i: int, dtype: torch.dtype = torch.bfloat16) -> BankEntry:
    g = torch.Generator().manual_seed(i)
    scale = torch.tensor([1.0, 30.0]).view(2, 1, 1, 1, 1)  # layers of different magnitude
    k = (torch.randn(SHAPE, generator=g) * scale).to(dtype)
    v = (torch.randn(SHAPE, generator=g) * scale).to(dtype)
    latent = torch.randn(1, 3, 4, 2, 2, generator=g)
    return BankEntry(3 * i, torch.randn(8, generator=g), k, v, latent)


def entry_bytes(dtype: torch.dtype = torch.bfloat16) -> int:
    e = make_entry(0, dtype)
    return sum(t.numel() * t.element_size() for t in (e.k, e.v, e.latent))


def files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("entry_*"))


def assert_same_kv(a: list, b: list) -> None:
    assert len(a) == len(b)
    for la, lb in zip(a, b, strict=True):
        assert len(la) == len(lb)
        for (ka, va), (kb, vb) in zip(la, lb, strict=True):
            assert ka.dtype == kb.dtype and torch.equal(ka, kb) and torch.equal(va, vb)


CPU = torch.device("cpu")
PICKS = [[0], [1, 3], [2, 0], [4, 5, 1], [0], [6, 2], [7, 3], [1, 4]]


def test_tiny_ram_budget_gives_identical_retrieval(tmp_path: Path) -> None:
    ram = MemoryBank(work_dir=None)
    roomy = MemoryBank(work_dir=tmp_path / "roomy", ram_gb=100.0)
    tiny = MemoryBank(work_dir=tmp_path / "tiny", ram_gb=0.0, gpu_entries=0)
    banks = (ram, roomy, tiny)
    for i in range(9):
        for bank in banks:
            bank.add(make_entry(i))
        if i % 3 == 2:
            tiny.flush()  # both paths: reads from writes still queued, and from files
        assert all(b.frame_indices == ram.frame_indices for b in banks)
        assert all(torch.equal(b.descriptors(), ram.descriptors()) for b in banks)
        for picks in PICKS:
            picks = [p for p in picks if p < len(ram)]
            for roundtrip, dtype in ((None, torch.bfloat16), (torch.bfloat16, torch.float32)):
                want = ram.layer_kv(picks, roundtrip, CPU, dtype)
                for bank in (roomy, tiny):
                    assert_same_kv(bank.layer_kv(picks, roundtrip, CPU, dtype), want)
    tiny.flush()
    stats = tiny.stats()
    assert stats["spills"] == 9 and stats["ram_bytes"] == 0 and stats["disk_entries"] == 9
    assert stats["reloads_disk_to_ram"] > 0 and roomy.stats()["spills"] == 0
    assert len(files(tmp_path / "tiny")) == 9 and files(tmp_path / "roomy") == []
    for a, b in zip(tiny.entries, ram.entries, strict=True):
        assert a.frame_index == b.frame_index and torch.equal(a.k, b.k) and torch.equal(a.latent, b.latent)
    for bank in banks:
        bank.close()


def test_fifo_eviction_at_max_entries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bank = MemoryBank(max_entries=3, work_dir=tmp_path, ram_gb=0.0)
    with caplog.at_level(logging.INFO, logger="dysink_cli.engine.memory.bank"):
        for i in range(5):
            bank.add(make_entry(i))
    bank.flush()
    assert bank.frame_indices == [6, 9, 12]
    assert torch.equal(bank.descriptors()[0], make_entry(2).descriptor)
    assert bank.stats()["evictions"] == 2 and len(files(tmp_path)) == 3
    assert "evicted the entry of frame 0 (max_entries = 3)" in caplog.text
    assert torch.equal(bank.layer_kv([0], None, CPU, torch.bfloat16)[1][0][0], make_entry(2).k[1])
    bank.close()


def test_fifo_eviction_at_disk_gb(tmp_path: Path) -> None:
    size = entry_bytes()
    bank = MemoryBank(work_dir=tmp_path, ram_gb=1.0, disk_gb=2.5 * size / 1e9)
    for i in range(4):
        bank.add(make_entry(i))
    assert bank.frame_indices == [6, 9] and bank.stats()["total_bytes"] == 2 * size
    assert bank.stats()["evicted_bytes"] == 2 * size
    with pytest.raises(ConfigError, match="smaller than one entry"):
        MemoryBank(work_dir=tmp_path / "small", disk_gb=0.5 * size / 1e9).add(make_entry(0))
    bank.close()


def test_spills_and_reloads_are_counted(tmp_path: Path) -> None:
    bank = MemoryBank(work_dir=tmp_path, ram_gb=1.5 * entry_bytes() / 1e9, gpu_entries=1)
    for i in range(3):
        bank.add(make_entry(i))  # RAM holds one; each is written ahead as the next to leave
    bank.flush()
    for picks in ([0], [0], [1], [2], [1]):
        bank.layer_kv(picks, None, CPU, torch.bfloat16)
        bank.flush()
    stats = bank.stats()
    want = {
        "retrieved": 5,
        "spills": 3,
        "reloads_disk_to_ram": 3,
        "reloads_ram_to_gpu": 3,
        "ram_drops": 5,  # e0, e1 as entries come; e2, e0, e1 as the reloads come in
        "evictions": 0,
        "ram_entries": 1,
        "gpu_entries": 2,
        "disk_entries": 3,
    }
    assert {k: stats[k] for k in want} == want
    bank.close()


def relative_error(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_fp8_round_trip(tmp_path: Path, dtype: torch.dtype) -> None:
    fp8_ram = MemoryBank(dtype="fp8")
    fp8_disk = MemoryBank(work_dir=tmp_path, ram_gb=0.0, gpu_entries=0, dtype="fp8")
    same = MemoryBank(dtype="same")
    entries = [make_entry(i, dtype) for i in range(3)]
    for e in entries:
        for bank in (fp8_ram, fp8_disk, same):
            bank.add(e)
    fp8_disk.flush()
    got = fp8_ram.layer_kv([0, 1, 2], None, CPU, dtype)
    assert_same_kv(fp8_disk.layer_kv([0, 1, 2], None, CPU, dtype), got)
    exact = same.layer_kv([0, 1, 2], None, CPU, dtype)
    for layer in range(SHAPE[0]):
        for (k, v), (ke, ve), e in zip(got[layer], exact[layer], entries, strict=True):
            assert k.dtype == dtype
            assert relative_error(k, e.k[layer]) < 0.07 and relative_error(v, e.v[layer]) < 0.07
            assert torch.equal(ke, e.k[layer]) and torch.equal(ve, e.v[layer])
    kv_bytes = 2 * entries[0].k.numel()
    assert fp8_ram.stats()["total_bytes"] == 3 * (kv_bytes + 2 * 2 * 4 + entries[0].latent.numel() * 4)
    assert torch.equal(fp8_disk.entry(1).latent, entries[1].latent)
    fp8_disk.close()


def test_checkpoint_and_reopen(tmp_path: Path) -> None:
    bank = MemoryBank(max_entries=4, work_dir=tmp_path, ram_gb=2.5 * entry_bytes() / 1e9)
    for i in range(4):
        bank.add(make_entry(i))
    bank.flush()
    assert len(files(tmp_path)) == 3  # two spilled, the next to leave written ahead, one only in RAM
    state = bank.checkpoint()
    assert len(files(tmp_path)) == 4 and all(row["file"] for row in state["entries"])
    want = bank.layer_kv([0, 1, 2, 3], None, CPU, torch.bfloat16)
    saved = tmp_path.parent / "state.pt"
    torch.save(state, saved)
    # after the checkpoint: a prompt-switch re-cache, then more entries (FIFO evicts checkpointed ones)
    zeros = torch.zeros(SHAPE, dtype=torch.bfloat16)
    bank.replace_kv(0, zeros, zeros)
    for i in range(4, 7):
        bank.add(make_entry(i))
    bank.flush()
    assert len(files(tmp_path)) > 4  # the checkpoint's files survive the evictions and the re-cache
    # "crash", then reopen from the saved state
    loaded = torch.load(saved, weights_only=True)
    reopened = reopen(loaded, tmp_path, max_entries=4, ram_gb=0.0)
    assert reopened.frame_indices == [0, 3, 6, 9] and len(files(tmp_path)) == 4  # later files removed
    assert torch.equal(reopened.descriptors(), state["descriptors"])
    assert_same_kv(reopened.layer_kv([0, 1, 2, 3], None, CPU, torch.bfloat16), want)
    assert reopened.stats()["spills"] == state["counters"]["spills"]
    reopened.add(make_entry(9))  # new ids do not collide with the reopened files
    reopened.flush()
    assert reopened.frame_indices == [3, 6, 9, 27] and len(files(tmp_path)) == 5  # frame 0's file kept
    reopened.checkpoint()
    assert len(files(tmp_path)) == 4  # ... until the next checkpoint
    reopened.close()
    bank.close()


def test_state_with_entries_only_in_ram_is_refused(tmp_path: Path) -> None:
    bank = MemoryBank(work_dir=tmp_path)
    bank.add(make_entry(0))
    with pytest.raises(ResumeError, match="never written"):
        reopen(bank.state_dict(), tmp_path)


def test_unwritable_work_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as err:
        MemoryBank(work_dir=blocker / "bank")
    assert "work folder" in err.value.message and err.value.hint and "\n" not in str(err.value)


def test_disk_full_raises_output_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Path, payload: Payload) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bank_store, "write_entry", full)
    bank = MemoryBank(work_dir=tmp_path, ram_gb=0.0)
    bank.add(make_entry(0))
    with pytest.raises(OutputError, match="disk full") as err:
        bank.flush()
    assert "bank.disk_gb" in err.value.hint and "\n" not in str(err.value)
    with pytest.raises(OutputError, match="disk full"):
        bank.add(make_entry(1))
    assert torch.equal(bank.entry(0).k, make_entry(0).k)  # the payload is still readable


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_entry_file(tmp_path: Path, damage: str) -> None:
    bank = MemoryBank(work_dir=tmp_path, ram_gb=0.0, gpu_entries=0)
    bank.add(make_entry(0))
    bank.add(make_entry(1))
    state = bank.checkpoint()
    path = tmp_path / state["entries"][0]["file"]
    data = path.read_bytes()
    path.write_bytes(data[:-10] if damage == "truncate" else b"garbage" * 20)
    with pytest.raises(ResumeError, match="corrupt") as err:
        bank.layer_kv([0], None, CPU, torch.bfloat16)
    assert err.value.hint and "\n" not in str(err.value)
    with pytest.raises(ResumeError, match="corrupt"):
        reopen(state, tmp_path)
    bank.close()


def test_spill_writer_thread_and_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write, threads, gate = bank_store.write_entry, [], threading.Event()

    def slow_write(path: Path, payload: Payload) -> None:
        gate.wait(5)
        threads.append(threading.current_thread().name)
        real_write(path, payload)

    monkeypatch.setattr(bank_store, "write_entry", slow_write)
    writer = SpillWriter(max_queue=2)
    e = make_entry(0)
    payload = bank_store.encode_entry(e.k, e.v, e.latent, "same", False)
    done = []
    writer.write(tmp_path / "a.safetensors", payload, partial(done.append, "a"))
    writer.write(tmp_path / "b.safetensors", payload, partial(done.append, "b"))
    writer.delete(tmp_path / "a.safetensors")  # ordered after the write of a
    assert done == [] and files(tmp_path) == []  # write() returned before anything was written
    gate.set()
    writer.flush()
    assert done == ["a", "b"] and [p.name for p in tmp_path.iterdir()] == ["b.safetensors"]
    assert threads == ["dysink-bank-writer"] * 2
    read = bank_store.read_entry(tmp_path / "b.safetensors", payload.nbytes)
    assert all(torch.equal(read.tensors[n], payload.tensors[n]) for n in payload.tensors)
    writer.close()


def test_bank_spills_without_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = bank_store.write_entry

    def slow_write(path: Path, payload: Payload) -> None:
        time.sleep(0.05)
        real_write(path, payload)

    monkeypatch.setattr(bank_store, "write_entry", slow_write)
    bank = MemoryBank(work_dir=tmp_path, ram_gb=0.0)
    start = time.perf_counter()
    bank.add(make_entry(0))
    assert time.perf_counter() - start < 0.05 and bank.stats()["pending_writes"] == 1
    assert torch.equal(bank.entry(0).v, make_entry(0).v)  # served from the write in flight
    bank.flush()
    assert bank.stats()["pending_writes"] == 0 and len(files(tmp_path)) == 1
    bank.close()


@pytest.mark.slow  # two DySink fixtures end to end
def test_parity_fixtures_with_bank_forced_to_disk(tmp_path: Path) -> None:
    from dysink_cli.parity.checks import compare_decisions, compare_tensor
    from dysink_cli.parity.fixture import Fixture
    from dysink_cli.parity.procedures import run_pipeline

    for name in ("dysink_rollout", "interactive_switch"):
        fx = Fixture.load(FIXTURES / name)
        max_entries = fx.config["pipeline"].get("memory_max_entries") or 0
        bank = MemoryBank(max_entries, work_dir=tmp_path / name, ram_gb=0.0, gpu_entries=0)
        outputs, decisions = run_pipeline(fx, bank=bank)
        checks = [compare_tensor(fx, n, outputs[n]) for n in ("latents", "x0_per_step")]
        checks += compare_decisions(fx, decisions)
        failed = [c.line() for c in checks if not c.passed]
        assert checks and not failed, failed
        stats = bank.stats()
        assert stats["spills"] >= stats["entries"] > 0 and stats["reloads_disk_to_ram"] > 0
        assert stats["retrieved"] > 0 and stats["ram_bytes"] == 0
        bank.close()


@pytest.mark.gpu  # run on a CUDA machine: make test-gpu
@pytest.mark.parametrize("fmt", ["same", "fp8"])
def test_cuda_tiers_match_cpu(tmp_path: Path, fmt: str) -> None:
    cuda = torch.device("cuda")
    cpu_bank = MemoryBank(dtype=fmt)
    first = make_entry(0)
    stored = bank_store.kv_shapes(tuple(first.k.shape), first.k.dtype, fmt)
    spares = 2 * pinned.set_bytes(tuple((n, sh, dt) for n, (sh, dt) in sorted(stored.items())))
    room = spares + 1.5 * 2 * entry_bytes()  # the two spare sets, then about one pinned entry
    gpu_bank = MemoryBank(work_dir=tmp_path, ram_gb=room / 1e9, gpu_entries=1, dtype=fmt, device=cuda)
    gpu_bank.reserve_pinned(tuple(first.k.shape), first.k.dtype)
    for i in range(8):
        e = make_entry(i)
        cpu_bank.add(e)
        k, v, latent = e.k.to(cuda), e.v.to(cuda), e.latent.to(cuda)
        gpu_bank.add(BankEntry(e.frame_index, e.descriptor, k, v, latent))
        del k, v, latent  # the bank copies them on its own stream and holds them until then:
        junk = [torch.full_like(t, 7.0, device=cuda) for t in (e.k, e.v, e.latent)]  # reuse their memory
        for picks in PICKS:
            picks = [p for p in picks if p < len(cpu_bank)]
            gpu_bank.prefetch(picks)
            got = gpu_bank.layer_kv(picks, torch.bfloat16, cuda, torch.float32)
            assert all(k.is_cuda for layer in got for k, _ in layer)
            got = [[(k.cpu(), v.cpu()) for k, v in layer] for layer in got]
            assert_same_kv(got, cpu_bank.layer_kv(picks, torch.bfloat16, CPU, torch.float32))
        del junk
    gpu_bank.flush()
    stats = gpu_bank.stats()
    assert stats["spills"] > 0 and stats["reloads_disk_to_ram"] > 0 and stats["gpu_entries"] <= 3
    assert stats["pinned_ready_hits"] > 0  # buffers made ahead on the thread were used
    assert stats["ram_entries"] >= 1 and gpu_bank.host_bytes <= gpu_bank.ram_budget
    assert all(t.is_pinned() for p in gpu_bank._ram.values() for t in p.tensors.values())
    for a, b in zip(gpu_bank.entries, cpu_bank.entries, strict=True):
        assert torch.equal(a.k, b.k) and torch.equal(a.latent, b.latent)
    state = gpu_bank.checkpoint()
    reopened = reopen(state, tmp_path, ram_gb=0.0, dtype=fmt, device=cuda)
    got = reopened.layer_kv([0, 5], None, cuda, torch.bfloat16)
    assert_same_kv(
        [[(k.cpu(), v.cpu()) for k, v in layer] for layer in got],
        cpu_bank.layer_kv([0, 5], None, CPU, torch.bfloat16),
    )
    reopened.close()
    gpu_bank.close()


def test_files_stay_within_disk_gb_across_checkpoints(tmp_path: Path) -> None:
    """Evicted entries still named by the last checkpoint keep their files until the next one; the
    bank keeps that headroom inside disk_gb, so the folder never exceeds the cap."""
    size, interval = entry_bytes(), 3
    cap = 8 * size
    bank = MemoryBank(work_dir=tmp_path, ram_gb=0, disk_gb=cap / 1e9, checkpoint_blocks=interval)
    peak = 0
    for i in range(40):
        bank.add(make_entry(i))
        bank.flush()
        if (i + 1) % interval == 0:
            bank.checkpoint()
        peak = max(peak, len(files(tmp_path)))  # the cap counts payload bytes: one entry per file
    assert peak * size <= cap
    assert len(bank) == 8 - interval  # live entries: the cap minus the checkpoint headroom
    bank.close()


def test_the_bank_asks_for_a_checkpoint_when_its_headroom_is_used(tmp_path: Path) -> None:
    """Checkpoints spaced by time (output.checkpoint_overhead) may come later than every
    checkpoint_blocks blocks: the bank says when the kept files fill their headroom."""
    size, interval = entry_bytes(), 3
    cap = 8 * size
    bank = MemoryBank(work_dir=tmp_path, ram_gb=0, disk_gb=cap / 1e9, checkpoint_blocks=interval)
    peak, checkpoints = 0, 0
    for i in range(40):
        bank.add(make_entry(i))
        bank.flush()
        if i == 5 or bank.needs_checkpoint:  # one checkpoint, then only when the bank asks
            bank.checkpoint()
            checkpoints += 1
        assert not bank.needs_checkpoint
        peak = max(peak, len(files(tmp_path)))
    assert peak * size <= cap and checkpoints >= 8
    bank.close()


def test_disk_gb_too_small_for_the_checkpoint_interval(tmp_path: Path) -> None:
    bank = MemoryBank(work_dir=tmp_path, disk_gb=2 * entry_bytes() / 1e9, checkpoint_blocks=5)
    with pytest.raises(ConfigError, match="checkpoint"):
        bank.add(make_entry(0))
    bank.close()


@pytest.mark.parametrize("fmt", ["same", "fp8"])
def test_kv_shapes_are_the_stored_tensors_shapes(fmt: str) -> None:
    e = make_entry(0)
    stored = bank_store.entry_tensors(e.k, e.v, e.latent, fmt)
    want = {n: (tuple(stored[n].shape), stored[n].dtype) for n in ("k", "v")}
    assert bank_store.kv_shapes(tuple(e.k.shape), e.k.dtype, fmt) == want


def test_sets_to_reserve_follow_the_ram_tier() -> None:
    from dysink_cli.engine.memory.pinned import MAX_RESERVED_SETS, sets_to_reserve

    assert sets_to_reserve(8e9, 862_000_000, 2) == 9  # 8 GB holds nine 0.86 GB sets
    assert sets_to_reserve(0.5e9, 862_000_000, 2) == 2  # smaller than one set: the spares only
    assert sets_to_reserve(float("inf"), 862_000_000, 2) == 2  # no work folder: nothing ahead
    assert sets_to_reserve(1e15, 1, 2) == MAX_RESERVED_SETS


def test_pinned_blocks_count_as_torch_allocates_them() -> None:
    k_bytes = 30 * 4680 * 12 * 128 * 2  # a full-size block's K in bf16: 0.43 GB
    assert bank_store.host_block_bytes(k_bytes, pinned=True) == 2**29  # 0.54 GB pinned
    assert bank_store.host_block_bytes(k_bytes, pinned=False) == k_bytes
    assert bank_store.host_block_bytes(4096, pinned=True) == 4096
    e = make_entry(0)
    payload = bank_store.encode_entry(e.k, e.v, e.latent, "same", pin=False)
    assert payload.host_nbytes == payload.nbytes  # nothing pinned on a CPU bank


def _ready_set(spares, like: dict[str, Tensor]) -> dict[str, Tensor] | None:  # noqa: ANN001
    deadline, got = time.monotonic() + 10, None
    while got is None and time.monotonic() < deadline:
        got = spares.take(like)
        time.sleep(0.01)
    return got


@pytest.mark.gpu
def test_pinned_spares_hand_out_ready_buffers_of_the_asked_shapes() -> None:
    from dysink_cli.engine.memory.pinned import PinnedSpares, shapes_of

    like = {"k": torch.zeros(3, 5, dtype=torch.bfloat16), "v": torch.zeros(3, 5, dtype=torch.bfloat16)}
    spares = PinnedSpares(spares=2)
    assert spares.take(like) is None  # the first ask starts the thread
    got = _ready_set(spares, like)
    assert got is not None and set(got) == {"k", "v"}
    assert all(got[n].shape == like[n].shape and got[n].dtype == like[n].dtype for n in like)
    assert all(t.is_pinned() for t in got.values())
    assert spares.take({"k": torch.zeros(4, 5, dtype=torch.bfloat16)}) is None  # new shapes: a miss
    spares.reserve(shapes_of(like), sets=6)  # the RAM tier's worth, made ahead
    deadline = time.monotonic() + 10
    while len(spares._ready) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(spares._ready) == 6
    taken = [spares.take(like) for _ in range(6)]
    assert all(t is not None for t in taken)
    assert spares._target == 2  # then only `spares` sets are kept ready
    spares.close()
    assert spares._thread is None and not spares._ready


def test_pinned_spares_count_inside_ram_gb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sets pinned ahead for the next entries are host memory bank.ram_gb bounds: a bank whose
    spares take two sets' room keeps that much less in its RAM tier."""
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **kw: real_empty(*a, **kw))  # no CUDA
    first = make_entry(0)
    shapes = pinned.shapes_of({"k": first.k, "v": first.v})
    one_set = pinned.set_bytes(shapes)
    spares = pinned.PinnedSpares(spares=2)
    assert spares.committed_bytes() == 0  # nothing reserved yet
    spares.reserve(shapes, 5)
    assert spares.committed_bytes() == 5 * one_set
    spares.take({"k": first.k, "v": first.v})  # ready or not yet made, it leaves the target
    assert spares.committed_bytes() == 4 * one_set  # a taken set is the entry's now
    spares.reserve(shapes, 2)
    bank = MemoryBank(work_dir=tmp_path, ram_gb=(2 * one_set + 2.5 * entry_bytes()) / 1e9)
    bank._spares = spares  # as a CUDA bank has them
    for i in range(4):
        bank.add(make_entry(i))
        assert bank.host_bytes <= bank.ram_budget
    assert bank.stats()["ram_entries"] == 2
    bank.close()
    assert spares.committed_bytes() == 0
