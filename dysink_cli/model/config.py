"""Architecture hyper-parameters of every network, as frozen dataclasses.

Sizes that the reference code hard-codes (1560 tokens per frame, 30 layers, 12x128 heads) are
derived from these values and the latent grid; nothing else in dysink may assume them.
"""

from __future__ import annotations

from dataclasses import dataclass

from dysink_cli.errors import ConfigError

# Wan2.1 VAE per-channel latent statistics (WanVAE.__init__).
WAN_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class DiTConfig:
    """Wan2.1 DiT (WanModel / CausalWanModel share these and the 825-key layout)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ConfigError(
                f"DiT dim {self.dim} must be divisible by num_heads {self.num_heads}",
                "pick a head count that divides the model width",
            )
        if not self.qk_norm:
            raise ConfigError("qk_norm = false is not supported", "Wan2.1 T2V models use q/k RMSNorm")
        if self.head_dim % 2:
            raise ConfigError(f"DiT head_dim {self.head_dim} must be even", "use an even head size")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def tokens_per_frame(self, latent_height: int, latent_width: int) -> int:
        """Tokens of one latent frame after (1, 2, 2) patching."""
        _, ph, pw = self.patch_size
        if latent_height % ph or latent_width % pw:
            raise ConfigError(
                f"latent {latent_height}x{latent_width} is not divisible by the patch {ph}x{pw}",
                "use a resolution that is a multiple of 16 pixels",
            )
        return (latent_height // ph) * (latent_width // pw)


@dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 causal video VAE (`_video_vae`)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] = WAN_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN_LATENT_STD

    # Pixel stride of one latent cell, and the temporal stride (first frame alone).
    spatial_stride: int = 8
    temporal_stride: int = 4


@dataclass(frozen=True)
class T5Config:
    """umT5-XXL encoder (`umt5_xxl(encoder_only=True)`)."""

    vocab_size: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    shared_pos: bool = False
    text_len: int = 512


@dataclass(frozen=True)
class PECoreConfig:
    """PE-Core vision tower (lcm_pe VisionTransformer with CLS, abs posemb, 2-D RoPE, attn pool)."""

    image_size: int = 384
    patch_size: int = 16
    width: int = 384
    layers: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    output_dim: int = 512
    attn_pooler_heads: int = 8

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


WAN_1_3B = DiTConfig()
WAN_VAE = VAEConfig()
UMT5_XXL = T5Config()
PE_CORE_S16_384 = PECoreConfig()
PE_CORE_CONFIGS = {
    "PE-Core-T16-384": PECoreConfig(width=192, heads=3),
    "PE-Core-S16-384": PE_CORE_S16_384,
    "PE-Core-B16-224": PECoreConfig(image_size=224, width=768, heads=12, output_dim=1024),
    "PE-Core-L14-336": PECoreConfig(
        image_size=336, patch_size=14, width=1024, layers=24, heads=16, output_dim=1024
    ),
}
