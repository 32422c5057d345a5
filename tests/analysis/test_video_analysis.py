"""`vitkit analyze` on clips. On a clip of identical frames an inflated divided model's spatial maps are the image
model's own attention maps (computed by the image analysis), and its temporal attention is uniform over time."""
import pytest
import torch
from PIL import Image

from vitkit.analysis import class_attention, token_layout
from vitkit.analysis.video import clip_attention
from vitkit.checkpoints import save_pretrained
from vitkit.cli import main
from vitkit.models import VideoConfig, VideoTransformer, inflate
from vitkit.preprocess import Preprocess

from analysis_helpers import tiny_model


def test_an_inflated_model_attends_like_the_image_model_in_space_and_evenly_in_time():
    image = tiny_model(in_chans=1)
    video = inflate(image, attention="divided", num_frames=8, tubelet_size=2).eval()
    picture = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        expected = class_attention(image.get_attention_maps(picture)[-1], token_layout(image.cfg))[0].mean(0)
    found = clip_attention(video, picture[0, :, None].expand(-1, 8, -1, -1), layer=-1)
    for tubelet in range(4):
        torch.testing.assert_close(torch.from_numpy(found.space[tubelet]).float(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(found.time), torch.full((4, 4, 4), 0.25, dtype=torch.float64))


@pytest.fixture
def video_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = VideoTransformer(VideoConfig(img_size=48, patch_size=8, in_chans=1, num_classes=8, embed_dim=32, depth=2,
                                         num_heads=2, num_frames=4, attention="factorised", temporal_depth=1))
    model.preprocess = Preprocess(mean=(0.1,), std=(0.3,))
    return save_pretrained(model, tmp_path / "video")


def test_analyze_draws_a_strip_per_clip_from_a_clip_dataset(tmp_path, video_checkpoint, stand_in_fashion, capsys):
    out = tmp_path / "out"
    data = f"moving-fashion:{stand_in_fashion}?test_clips=4&frames=6&size=48"
    assert main(["analyze", str(video_checkpoint), "--data", data, "--out", str(out), "--show", "2",
                 "--layer", "0", "1"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clip0_layer0.png", "clip0_layer1.png", "clip1_layer0.png", "clip1_layer1.png", "report.html"]
    assert "temporal encoder" in (out / "report.html").read_text()


def test_analyze_reads_clip_folders_and_asks_for_clips_when_it_has_none(tmp_path, video_checkpoint, capsys):
    folder = tmp_path / "clip"
    folder.mkdir()
    for t in range(5):
        Image.new("L", (48, 48), 40 * t).save(folder / f"{t}.png")
    assert main(["analyze", str(video_checkpoint), "--images", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "clip0_layer1.png").stat().st_size > 0
    assert main(["analyze", str(video_checkpoint), "--out", str(tmp_path / "none")]) == 2
    assert "pass --data with a clip dataset" in capsys.readouterr().err
