"""`vitkit data check`: classes, counts, sizes, modes and every unreadable file."""
from __future__ import annotations

import re

from PIL import Image

from vitkit.cli import main


def test_check_reports_counts_sizes_modes_and_bad_files(folder, capsys):
    Image.new("L", (7, 5), 3).save(folder / "fox" / "gray.png")
    (folder / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xffnot really")
    assert main(["data", "check", f"imagefolder:{folder}"]) == 1
    out = capsys.readouterr().out
    assert "[all]: 20 images in 3 classes" in out
    assert re.search(r"cat +6\n", out) and re.search(r"dog +7\n", out) and re.search(r"fox +7\n", out)
    assert "20x16 (18)" in out and "7x5 (1)" in out
    assert "RGB (18)" in out and "L (1)" in out
    assert "unreadable files (1):" in out and "broken.jpg" in out


def test_check_of_a_clean_builtin_dataset_exits_zero(capsys):
    assert main(["data", "check", "digits"]) == 0
    out = capsys.readouterr().out
    assert "digits [train]: 1,437 images in 10 classes" in out and "8x8 (1,437)" in out and "L (1,437)" in out
    assert "digits [test]: 360 images" in out and "unreadable files: none" in out


def test_check_of_a_missing_folder_is_an_error_with_exit_code_2(tmp_path, capsys):
    assert main(["data", "check", f"imagefolder:{tmp_path / 'nowhere'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
