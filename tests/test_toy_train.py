"""Toy-model training pieces at micro size on the CPU: the training calls equal the engine's,
losses are finite and fall on a fixed batch, a resumed run is bit-exact, the export loads strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dysink_cli.engine.kv_cache import KVCache
from dysink_cli.model.dit import AttnContext
from dysink_cli.model.rope import rope_tables, wan_frequencies
from dysink_cli.toy.data import Layout
from dysink_cli.toy.models import load_toy_networks, new_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train import export
from dysink_cli.toy.train_dit import Blocks, Schedule, context_kv, noisy_context, teacher_forcing_loss
from dysink_cli.toy.train_vae import decode_frames, encode_posterior, vae_loss
from dysink_cli.toy.trainer import Trainer

MICRO = PROFILES["micro"]


def _log(_: str) -> None:
    pass


@pytest.fixture()
def nets():
    torch.manual_seed(0)
    n = new_toy_networks(MICRO.configs, seed=1)
    with torch.no_grad():  # a non-zero head, so the compared flows are not all 0
        n.dit.head.head.weight.normal_(0, 0.1)
    return n


def test_training_decode_is_the_streaming_decode(nets) -> None:
    vae = nets.vae.eval()
    z = torch.randn(1, 7, 16, 4, 4)  # (B, T, C, h, w), stats are 0 / 1
    with torch.no_grad():
        whole = decode_frames(vae, z.transpose(1, 2)).transpose(1, 2).clamp(-1, 1)
        state, chunks = vae.decoder_state(), []
        for lo in (0, 3, 6):
            frames, state = vae.decode_chunk(z[:, lo : lo + 3], state)
            chunks.append(frames)
        video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
        mu, _ = encode_posterior(vae, video)
    torch.testing.assert_close(whole, torch.cat(chunks, dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mu.transpose(1, 2), vae.encode(video), atol=1e-5, rtol=1e-5)


def test_preroll_trains_only_the_stream_after_it(nets) -> None:
    """With a pre-roll of P latents the caches run first and only later frames are returned and
    carry gradients: the same values as the whole stream's tail."""
    vae = nets.vae.train()
    video = torch.rand(1, 3, 17, 32, 32) * 2 - 1  # 5 latents
    with torch.no_grad():
        mu_all, _ = encode_posterior(vae, video)
        whole = decode_frames(vae, mu_all)
    for preroll in (1, 3):
        mu, _ = encode_posterior(vae, video, preroll)
        tail = decode_frames(vae, mu, preroll)
        torch.testing.assert_close(mu, mu_all, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tail, whole[:, :, 4 * preroll - 3 :], atol=1e-5, rtol=1e-5)
        first_conv = vae.encoder.conv1.weight
        (grad,) = torch.autograd.grad(tail.square().mean(), first_conv, allow_unused=True)
        assert grad is not None and grad.abs().sum() > 0


def _engine_flow(dit, text_kv, freqs, blocks, start, mem_latents, mem_start, t, x_noisy):
    """The engine's calls: a retrieved entry alone at its position, blocks committed with a
    9-frame window, then the last block's noisy call with the entry as memory."""
    cfg, n = dit.cfg, blocks.shape[1]
    tpf, grid = 4, (2, 2)

    def call(cache, x, first, timestep, memory=None):
        c = cache.begin(first, 3, 9)
        rope = rope_tables(freqs, torch.arange(first, first + 3), *grid)
        tt = torch.full((1, 3), float(timestep))
        return dit(x.permute(0, 2, 1, 3, 4), tt, text_kv, rope, AttnContext(cache=c, memory=memory))

    entry = KVCache(cfg.num_layers, 1, 3, tpf, cfg.num_heads, cfg.head_dim)
    entry.place(mem_start)
    call(entry, mem_latents, mem_start, 0.0)
    memory = [[(entry.k[layer], entry.v[layer])] for layer in range(cfg.num_layers)]
    cache = KVCache(cfg.num_layers, 1, 15, tpf, cfg.num_heads, cfg.head_dim)
    cache.place(start)
    for j in range(n - 1):
        call(cache, blocks[:, j], start + 3 * j, 0.0)
    return call(cache, x_noisy, start + 3 * (n - 1), t, memory).permute(0, 2, 1, 3, 4)


def test_training_call_equals_engine_cache(nets) -> None:
    dit = nets.dit.eval()
    freqs = wan_frequencies(dit.cfg.head_dim)
    rows, n = 2, 4
    chain = torch.randn(rows, n, 3, 16, 4, 4)
    far = torch.randn(rows, 1, 3, 16, 4, 4)
    text_kv = dit.encode_text(torch.randn(rows, 5, dit.cfg.text_dim))
    layout = Layout(chain_blocks=n, window_blocks=2, far="memory", far_blocks=1, from_start=False)
    b = Blocks(layout, chain, far, torch.tensor([0, 30]), torch.tensor([[0], [6]]), text_kv)
    x_noisy, t = torch.randn(rows, 3, 16, 4, 4), torch.tensor([937.5, 937.5])
    from dysink_cli.toy.dit_context import dit_call

    with torch.no_grad():
        memory, sink, clean = context_kv(dit, b, freqs, chain, far)
        ctx = noisy_context(b, n - 1, memory, sink, clean)
        flow, _ = dit_call(dit, x_noisy, t, text_kv, b.chain_starts + 3 * (n - 1), freqs, ctx)
        for row in range(rows):
            one_text = [(k[row : row + 1], v[row : row + 1]) for k, v in text_kv]
            want = _engine_flow(
                dit, one_text, freqs, chain[row : row + 1], int(b.chain_starts[row]),
                far[row : row + 1, 0], int(b.far_starts[row, 0]), 937.5, x_noisy[row : row + 1],
            )  # fmt: skip
            torch.testing.assert_close(flow[row : row + 1], want, atol=2e-5, rtol=1e-4)


def test_vae_and_dit_losses_fall_on_a_fixed_batch(nets) -> None:
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    opt = torch.optim.Adam(nets.vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        loss, _ = vae_loss(nets.vae, video, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]

    dit, freqs, schedule = nets.dit, wan_frequencies(nets.dit.cfg.head_dim), Schedule.shipped()
    layout = Layout(chain_blocks=3, window_blocks=2, far="memory", far_blocks=1, from_start=False)
    chain, far = torch.randn(2, 3, 3, 16, 4, 4), torch.randn(2, 1, 3, 16, 4, 4)
    context = torch.randn(2, 5, dit.cfg.text_dim)
    opt = torch.optim.Adam(dit.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        b = Blocks(
            layout, chain, far, torch.tensor([9, 60]), torch.tensor([[0], [30]]), dit.encode_text(context)
        )
        loss, _ = teacher_forcing_loss(dit, b, freqs, schedule, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {
        f"{p}.{k}": t.clone() for p, m in trainer.nets.modules().items() for k, t in m.state_dict().items()
    }


def test_resume_is_bit_exact_and_export_loads_strictly(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    whole = Trainer(MICRO, tmp_path / "whole", cpu, seed=3)
    assert whole.run(10, None, _log)
    first = Trainer(MICRO, tmp_path / "split", cpu, seed=3)
    first.run(10, None, _log, max_steps=7)  # stops inside the dit stage, optimiser state saved,
    assert first.stage() == "dit" and first.counters.steps["dit"] == 1  # its batch used once of two
    assert first.batch is not None and first.batch.uses == 1
    second = Trainer(MICRO, tmp_path / "split", cpu, seed=0)
    second.load(tmp_path / "split")
    assert second.run(10, None, _log)
    want, got = _weights(whole), _weights(second)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert (tmp_path / "split" / "losses.jsonl").read_text().count("\n") >= 10

    path = tmp_path / "weights" / "toy.safetensors"
    export(second, path, shipped=False)
    dit, vae, t5, tokenizer, pe = load_toy_networks("cpu", torch.float32, path, MICRO.configs)
    ids, mask = tokenizer(["a snowy field, the camera pans right"])
    assert t5.encode(ids, mask).shape == (1, MICRO.configs.t5.text_len, MICRO.configs.t5.dim)
    assert (path.parent / "RECORD.md").is_file()
    assert torch.equal(dit.blocks[0].ffn[0].weight, second.nets.dit.blocks[0].ffn[0].weight.half().float())


def test_lr_factor_warms_up_then_follows_a_cosine_to_a_tenth() -> None:
    from dysink_cli.toy.profiles import lr_factor

    assert lr_factor(0, 100, 0.0) == pytest.approx(0.01)  # step 1 of a 100-step warm-up
    assert lr_factor(99, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor(500, 100, 0.5) == pytest.approx(0.55)
    assert lr_factor(500, 100, 1.0) == pytest.approx(0.1) == lr_factor(500, 100, 3.0)
    factors = [lr_factor(500, 100, p / 10) for p in range(11)]
    assert factors == sorted(factors, reverse=True)
