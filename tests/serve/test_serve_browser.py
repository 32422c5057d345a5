"""The demo page in a real browser: Debian's chromium driven by Selenium through /usr/bin/chromedriver (Selenium
Manager cannot download drivers here). Without a browser the test skips, except under CI=true, where it fails."""
import os
import shutil
import sys
from pathlib import Path

import pytest

from serve_helpers import require_serve_extra

require_serve_extra()

CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
INSTALL = "apt-get install chromium chromium-driver (.ci/run does), and pip install selenium"


def browser_or_skip():
    """A headless chromium under Selenium, or a skip (a failure in CI) that says what is missing."""
    missing = []
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    binary = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if binary is None:
        missing.append(f"a chromium browser ({', '.join(BROWSERS)} on PATH)")
    if not CHROMEDRIVER.is_file():
        missing.append(str(CHROMEDRIVER))
    if missing:
        reason = f"no browser to test the demo page: missing {' and '.join(missing)}; {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1100,800"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_the_demo_page_shows_predicts_top1_and_the_overlay(live_server, photos, predicted):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    path = photos[1]
    driver = browser_or_skip()
    try:
        driver.get(f"{live_server.url}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: "backend torch-fp32" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(path))
        top1 = wait.until(lambda d: d.find_element(By.ID, "top1").text)
        assert top1 == predicted[path.name]["top"][0]["class"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 5
        width = wait.until(lambda d: d.execute_script("return document.getElementById('overlay').naturalWidth"))
        assert width > 0
        assert not driver.find_element(By.ID, "error").is_displayed()
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()


def test_without_a_browser_the_test_skips_saying_why_but_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMEDRIVER", tmp_path / "chromedriver")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromedriver.*apt-get install chromium chromium-driver"):
        browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        browser_or_skip()
