#!/usr/bin/env python3
"""Screenshots of a build report (`kiln report` / `kiln build --report`), one
PNG per step, taken in headless Chromium through Selenium.

    python3 scripts/report_shots.py REPORT.html OUTDIR [--width 1400] [--height 1000]

Needs the Debian packages chromium and chromium-driver and the PyPI package
selenium.
"""
import argparse
import shutil
import sys
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("outdir")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    a = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    drv = shutil.which("chromedriver")
    if not exe or not drv:
        sys.exit("needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={a.width},{a.height}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(drv), options=opts)
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(Path(a.report).resolve().as_uri())
        steps = len(driver.find_elements(By.CSS_SELECTOR, "section[id^=step-]"))
        nxt = driver.find_element(By.ID, "next")
        for n in range(1, steps + 1):
            if n > 1:
                nxt.click()
            section = driver.find_element(By.ID, f"step-{n}")
            for _ in range(80):  # the fade-in ends
                if section.is_displayed() and section.value_of_css_property("opacity") == "1":
                    break
                time.sleep(0.1)
            driver.save_screenshot(str(out / f"step{n}.png"))
            print(out / f"step{n}.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
