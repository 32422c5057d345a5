"""SwinConfig: every choice that shapes a SwinTransformer, under timm's argument names and with its defaults."""
from __future__ import annotations

from dataclasses import dataclass

from .config import PlainConfig, as_pair

SWIN_POOLS = ("avg", "none")


@dataclass
class SwinConfig(PlainConfig):
    """Stage i has depths[i] blocks of num_heads[i] heads at width embed_dim * 2^i, on a map 2^i times coarser."""

    img_size: int | tuple[int, int] = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int | tuple[int, int] = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    global_pool: str = "avg"

    def __post_init__(self) -> None:
        self.img_size = as_pair(self.img_size, "img_size")
        self.window_size = as_pair(self.window_size, "window_size")
        self.depths = tuple(int(n) for n in self.depths)
        self.num_heads = tuple(int(n) for n in self.num_heads)
        self._validate()

    def _validate(self) -> None:
        if self.global_pool not in SWIN_POOLS:
            raise ValueError(f"global_pool={self.global_pool!r} is not one of {SWIN_POOLS}")
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} must name the same number of "
                             "stages (at least one)")
        if min(self.depths) < 1 or min(self.num_heads) < 1 or self.patch_size < 1 or min(self.window_size) < 1:
            raise ValueError("depths, num_heads, patch_size and window_size must be positive")
        for stage, (dim, heads) in enumerate(zip(self.stage_dims, self.num_heads)):
            if dim % heads:
                raise ValueError(f"stage {stage} is {dim} wide (embed_dim * 2^{stage}), which {heads} heads "
                                 f"(num_heads[{stage}]) do not divide")
        self.check_input_size(self.img_size, "img_size")

    def check_input_size(self, size: tuple[int, int], what: str = "input") -> None:
        """Refuses a size whose stage maps do not tile into whole windows, naming the sizes that do."""
        multiple = self.input_multiple
        if size[0] % multiple[0] == 0 and size[1] % multiple[1] == 0 and min(size) > 0:
            return
        down = [max(m, s // m * m) for s, m in zip(size, multiple)]
        up = [max(m, -(-s // m) * m) for s, m in zip(size, multiple)]
        side = f"{multiple[0]}" if multiple[0] == multiple[1] else f"{multiple[0]} (height) and {multiple[1]} (width)"
        window = self.window_size
        raise ValueError(f"Swin {what} {size[0]}x{size[1]} does not fit: every stage's map must tile into "
                         f"{window[0]}x{window[1]} windows, so height and width must be multiples of {side} "
                         f"(patch {self.patch_size} x window x 2^{self.num_stages - 1} for the patch mergings); "
                         f"resize or crop to e.g. {down[0]}x{down[1]} or {up[0]}x{up[1]}")

    @property
    def input_size(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W)."""
        return (self.in_chans, *self.img_size)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2 ** i for i in range(self.num_stages))

    @property
    def num_features(self) -> int:
        """Width of the last stage: what the head sees."""
        return self.stage_dims[-1]

    @property
    def input_multiple(self) -> tuple[int, int]:
        """Input sides must be multiples of these: patch x window x 2 per patch merging."""
        scale = self.patch_size * 2 ** (self.num_stages - 1)
        return self.window_size[0] * scale, self.window_size[1] * scale

    @property
    def grid_size(self) -> tuple[int, int]:
        """The first stage's map (patches per side)."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens of the first stage's map, the longest sequence the windows tile."""
        return self.grid_size[0] * self.grid_size[1]

    def mlp_hidden_dim(self, stage: int) -> int:
        return int(self.stage_dims[stage] * self.mlp_ratio)
