"""Token merging against a brute-force matching written token by token, and proportional attention against duplicated
tokens (a token of size s must weigh as s copies of it would)."""
import pytest
import torch

from vitkit.layers import Attention, TokenMerger, bipartite_soft_matching, merge_weighted


def cosine(a, b):
    return float(a @ b) / float(a.norm() * b.norm())


def brute_force_merge(x, metric, r, num_prefix, num_suffix, size=None):
    """ToMe's matching spelled out: mergeable tokens alternate A, B, A, B...; each A picks its most similar B; the r
    A tokens with the best matches join their B tokens; output = prefix, unmerged A, B groups, suffix (in order),
    each a size-weighted mean. Returns the merged tokens and their sizes."""
    batch, tokens, _ = x.shape
    size = torch.ones(batch, tokens, 1) if size is None else size
    outs, sizes = [], []
    for b in range(batch):
        body = list(range(num_prefix, tokens - num_suffix))
        set_a, set_b = body[0::2], body[1::2]
        partner = {a: max(set_b, key=lambda j: cosine(metric[b, a], metric[b, j])) for a in set_a}
        score = {a: cosine(metric[b, a], metric[b, partner[a]]) for a in set_a}
        merged = sorted(set_a, key=lambda a: -score[a])[:r]
        groups = ([[i] for i in range(num_prefix)] + [[a] for a in set_a if a not in merged]
                  + [[j] + [a for a in merged if partner[a] == j] for j in set_b]
                  + [[i] for i in range(tokens - num_suffix, tokens)])
        outs.append(torch.stack([sum(x[b, i] * size[b, i] for i in g) / sum(size[b, i] for i in g) for g in groups]))
        sizes.append(torch.stack([sum(size[b, i] for i in g) for g in groups]))
    return torch.stack(outs), torch.stack(sizes)


@pytest.mark.parametrize("tokens,r,num_prefix,num_suffix", [(10, 3, 0, 0), (11, 2, 1, 0), (13, 4, 2, 3), (9, 1, 1, 1)])
def test_matching_and_weighted_merge_equal_the_brute_force(tokens, r, num_prefix, num_suffix):
    torch.manual_seed(tokens)
    x, metric = torch.randn(3, tokens, 6), torch.randn(3, tokens, 5)
    size = torch.randint(1, 4, (3, tokens, 1)).float()
    dest, length = bipartite_soft_matching(metric, r, num_prefix, num_suffix)
    merged, merged_size = merge_weighted(x, dest, length, size)
    expected, expected_size = brute_force_merge(x, metric, r, num_prefix, num_suffix, size)
    assert length == tokens - r
    torch.testing.assert_close(merged, expected)
    torch.testing.assert_close(merged_size, expected_size)


def test_prefix_and_suffix_tokens_are_never_merged_even_when_identical_to_patches():
    torch.manual_seed(0)
    metric = torch.randn(1, 12, 4)
    metric[0, 0] = metric[0, 3]  # the class token's key equals a patch's
    metric[0, 11] = metric[0, 4]  # and a suffix register's another's
    x = torch.randn(1, 12, 3)
    dest, length = bipartite_soft_matching(metric, 5, num_prefix=2, num_suffix=1)
    merged, size = merge_weighted(x, dest, length)
    assert torch.equal(merged[:, :2], x[:, :2]) and torch.equal(merged[:, -1], x[:, -1])
    assert size[0, :2].tolist() == [[1.0], [1.0]] and size[0, -1].tolist() == [1.0]


def test_r_is_capped_at_half_the_mergeable_tokens_and_zero_merges_nothing():
    metric = torch.randn(2, 9, 4)
    assert bipartite_soft_matching(metric, 100, num_prefix=1)[1] == 9 - 4
    assert bipartite_soft_matching(metric, 0) is None
    assert bipartite_soft_matching(metric[:, :2], 3, num_prefix=1) is None  # one mergeable token: no pair


def test_merger_over_two_blocks_keeps_every_merged_token_the_mean_of_its_originals():
    """Sizes carry over blocks: after two merges, each merged token (values, RoPE angles) must be the plain mean of
    the original tokens that went into it, which unmerge names."""
    torch.manual_seed(1)
    x = torch.randn(2, 15, 4)
    angles = torch.randn(15, 3) * 5
    merger = TokenMerger(x, num_prefix=1, num_suffix=0, angles=angles)
    merged = x
    for r in (4, 3):
        merged = merger.step(r)(merged, torch.randn(2, merged.shape[1], 6))
    assert merged.shape == (2, 15 - 7, 4)
    source = merger.source
    for b in range(2):
        for slot in range(merged.shape[1]):
            members = (source[b] == slot).nonzero()[:, 0]
            torch.testing.assert_close(merged[b, slot], x[b, members].mean(0))
            torch.testing.assert_close(merger.angles[b, slot], angles[members].mean(0))
            assert merger.size[b, slot, 0] == len(members)
    spread = merger.unmerge(merged)
    torch.testing.assert_close(spread, merged.gather(1, source[..., None].expand(-1, -1, 4)))
    assert spread[:, 0].equal(x[:, 0])  # the class token is its own


def test_merged_rope_position_is_the_size_weighted_mean_of_positions():
    """Tokens at grid positions (0, 0) and (0, 1) with sizes 3 and 1 merge into position (0, 0.25): head_dim 8 rotates
    the row by angles row * [1, theta^-1/2] and the column by col * [1, theta^-1/2]."""
    from vitkit.layers import rope_angles, rope_tables

    theta = 100.0
    angles = rope_angles(8, theta, (2, 2))  # positions (0,0) (0,1) (1,0) (1,1)
    x = torch.randn(1, 4, 2)
    merger = TokenMerger(x, 0, 0, angles)
    merger.size = torch.tensor([[[3.0], [1.0], [1.0], [1.0]]])
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]]])  # token 0 (set A) matches token 1
    merger.step(1)(x, keys)
    slot = merger.source[0, 0]
    assert merger.source[0, 1] == slot
    freqs = torch.tensor([1.0, theta ** -0.5])
    expected = torch.cat([0.0 * freqs, 0.25 * freqs])
    torch.testing.assert_close(merger.angles[0, slot], expected)
    cos, sin = merger.rope()
    torch.testing.assert_close(cos[0, 0, slot], rope_tables(expected[None])[0][0])
    torch.testing.assert_close(sin[0, 0, slot], expected.sin().repeat_interleave(2))


def test_proportional_attention_weighs_a_token_of_size_s_as_s_copies():
    torch.manual_seed(0)
    attn = Attention(16, 2).eval()
    tokens = torch.randn(1, 3, 16)
    copies = tokens[:, [0, 0, 0, 1, 2, 2]]  # token 0 three times, token 2 twice
    size = torch.tensor([3.0, 1.0, 2.0])
    with torch.no_grad():
        expected = attn(copies)[:, [0, 3, 4]]
        merged = attn(tokens, attn_bias=size.log()[None, None, None])
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-5)
