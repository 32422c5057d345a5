"""The README's picture of the demo page: `vitkit serve` on a free loopback port, an image uploaded through the
page in headless chromium (Debian's chromium and chromium-driver, as the browser test drives them), a screenshot
once the top-5 and the overlay are drawn.

    python benchmarks/serve_screenshot.py ../shared/checkpoints/cifar10_budget cat.png docs/images/serve_demo.png
"""
from __future__ import annotations

import argparse
import shutil
import sys
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from vitkit.serve.process import ServerProcess


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="what to serve (a run folder, checkpoint or ONNX file)")
    parser.add_argument("image", help="the image to upload through the page")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--backend", default="torch-fp32", help="the server's backend (auto builds ONNX files first)")
    parser.add_argument("--explain", default="rollout", choices=["rollout", "gradcam", "eigencam", ""])
    parser.add_argument("--size", default="1000,760", help="browser window width,height in pixels")
    parser.add_argument("--threads", default="1", help="server threads (one: a busy machine's spinning OpenMP "
                                                       "threads would put seconds on the latency shown)")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                     f"--window-size={args.size}"):
        options.add_argument(argument)
    with ServerProcess([args.checkpoint, "--backend", args.backend, "--max-wait-ms", "0", "--threads",
                        args.threads]) as server:
        warm_up = urllib.request.Request(f"{server.url}/v1/classify?explain={args.explain}", method="POST",
                                         data=Path(args.image).read_bytes(), headers={"Content-Type": "image/png"})
        urllib.request.urlopen(warm_up).read()  # the first explanation pays one-off costs the picture should not show
        driver = webdriver.Chrome(service=Service(args.chromedriver), options=options)
        try:
            driver.get(f"{server.url}/")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: "backend" in d.find_element(By.ID, "model").text)
            Select(driver.find_element(By.ID, "explain")).select_by_value(args.explain)
            driver.find_element(By.ID, "file").send_keys(str(Path(args.image).resolve()))
            wait.until(lambda d: d.find_element(By.ID, "top1").text)
            if args.explain:
                wait.until(lambda d: d.execute_script("return document.getElementById('overlay').naturalWidth"))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
            print(f"top-1 {driver.find_element(By.ID, 'top1').text!r}; wrote {args.out}")
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
