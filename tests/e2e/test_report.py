"""`kiln report`: the HTML page replaying a build, checked against `kiln inspect --json` and in a headless browser.

The browser part needs Debian packages `chromium` and `chromium-driver` and the PyPI package `selenium`;
it skips, saying which is missing, without them. KILN_REPORT_SHOTS=DIR saves a screenshot per step there.
"""
import json
import os
import re
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import SEED_MODEL, kiln, one_line_error

STEPS = 6


def seed_with_nms(path):
    """The seed model with EfficientNMS_TRT on its outputs: a plugin layer after built-in ones."""
    m = onnx.load(str(SEED_MODEL))
    g = m.graph
    g.node.append(helper.make_node("EfficientNMS_TRT", ["bbox_regression", "cls_logits"],
                                   ["num", "det_boxes", "det_scores", "det_classes"], name="nms", domain="TRT",
                                   score_threshold=0.2, iou_threshold=0.5, max_output_boxes=10, background_class=-1,
                                   score_activation=1, box_coding=0, plugin_version="1"))
    del g.output[:]
    g.output.extend(helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                    for o in ("num", "det_boxes", "det_scores", "det_classes"))
    m.opset_import.append(helper.make_opsetid("TRT", 1))
    onnx.save(m, str(path))
    return path


def embedded_data(html_path):
    """The JSON the page renders, as kiln embedded it."""
    html = Path(html_path).read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="kiln-data">(.*?)</script>', html, re.S)
    assert m, "no #kiln-data script in the page"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    plan = d / "seed.plan"
    kiln("build", SEED_MODEL, "-o", plan)
    bench = d / "bench.json"
    bench.write_text(kiln("bench", plan, "--json", "--iterations", "5", "--warmup", "1").stdout)
    html = d / "build.html"
    kiln("report", plan, "-o", html, "--bench", bench, "--model", SEED_MODEL)
    return d, plan, bench, html


def test_embedded_json_matches_inspect(built):
    d, plan, bench, html = built
    data = embedded_data(html)
    inspected = json.loads(kiln("inspect", plan, "--json").stdout)
    s = data["summary"]
    assert s["launches_before"] == inspected["launches_before"]
    assert s["launches_after"] == inspected["launches_after"]
    assert s["launches_after"] < s["launches_before"]  # the seed model's CBR fusions remove launches
    assert s["layers"] == inspected["layers"]
    assert s["fused_groups"] == inspected["fused_groups"]
    assert "conv1+bn1+relu1 -> CBR" in s["fused_groups"]
    # The imported graph from --model: the BatchNormalization and Relu nodes fusion removed are in it.
    ops = [l["op_type"] for l in s["layers_before"]]
    assert "BatchNormalization" in ops and "Relu" in ops
    assert len(s["layers_before"]) == data["layers_before_count"]
    # The bench result is carried as measured, not recomputed; it says when and how it was taken.
    result = json.loads(bench.read_text())
    assert data["benches"][0]["result"] == result
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result["date"])
    assert result["command"] == f"kiln bench {plan} --warmup 1 --iterations 5 --json"


def test_build_report_is_the_same_page(tmp_path):
    plan, html = tmp_path / "m.plan", tmp_path / "b.html"
    kiln("build", SEED_MODEL, "-o", plan, "--report", html)
    data = embedded_data(html)
    inspected = json.loads(kiln("inspect", plan, "--json").stdout)
    assert data["summary"]["launches_after"] == inspected["launches_after"]
    assert data["summary"]["layers"] == inspected["layers"]
    assert len(data["summary"]["layers_before"]) == data["layers_before_count"]
    assert data["benches"] == []
    assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', html.read_text()), "page loads something remote"


def test_report_errors(tmp_path, built):
    _, plan, _, _ = built
    r = kiln("report", tmp_path / "missing.plan", "-o", tmp_path / "x.html", check=False)
    one_line_error(r, 3, "missing.plan")
    r = kiln("report", plan, "-o", tmp_path / "no" / "such" / "dir" / "x.html", check=False)
    one_line_error(r, 3, "x.html")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    r = kiln("report", plan, "-o", tmp_path / "x.html", "--bench", bad, check=False)
    one_line_error(r, 3, "bad.json")
    not_plan = tmp_path / "not.plan"
    not_plan.write_bytes(b"KILNPLAN" + b"\0" * 40)
    r = kiln("report", not_plan, "-o", tmp_path / "x.html", check=False)
    one_line_error(r, 3, "not.plan")
    assert not (tmp_path / "x.html").exists()


def browser():
    """A headless Chromium driven by Selenium, or a skip naming what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("browser check needs the PyPI package selenium (pip install selenium)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    drv = shutil.which("chromedriver")
    if not exe or not drv:
        pytest.skip("browser check needs Debian packages chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(drv), options=opts)


def shown(driver, n):
    """Step n's section once its fade-in has ended (Selenium reads a fading element as hidden)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    section = driver.find_element(By.ID, f"step-{n}")
    try:
        WebDriverWait(driver, 8).until(lambda d: section.is_displayed() and section.value_of_css_property("opacity") == "1")
    except TimeoutException:
        pytest.fail(f"step {n} is not shown")
    return section


def severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_page_steps_in_browser(built):
    from_dir, plan, bench, html = built
    driver = browser()
    from selenium.webdriver.common.by import By
    shots = os.environ.get("KILN_REPORT_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    inspected = json.loads(kiln("inspect", plan, "--json").stdout)
    try:
        driver.get(Path(html).resolve().as_uri())
        assert severe(driver) == []
        nxt = driver.find_element(By.ID, "next")
        for n in range(1, STEPS + 1):
            if n > 1:
                nxt.click()
            section = shown(driver, n)
            for other in range(1, STEPS + 1):
                if other != n:
                    assert not driver.find_element(By.ID, f"step-{other}").is_displayed()
            body = section.find_element(By.CLASS_NAME, "body")
            assert body.text.strip(), f"step {n} drew nothing"
            if shots:
                driver.save_screenshot(str(Path(shots) / f"step{n}.png"))
            if n == 1:  # the imported graph: one box per node, names as the importer gave them
                names = {g.get_attribute("data-name") for g in body.find_elements(By.CSS_SELECTOR, "g.node")}
                assert {"bn1", "relu1", "conv1"} <= names
            elif n == 2:
                want = f"{inspected['launches_before']} \u2192 {inspected['launches_after']}"
                assert body.find_element(By.ID, "launches").text == want
                assert "conv1+bn1+relu1 -> CBR" in body.text
                names = {g.get_attribute("data-name") for g in body.find_elements(By.CSS_SELECTOR, "g.node")}
                assert "bn1" not in names and "conv1" in names
            elif n == 3:
                assert "fp32" in body.text
            elif n == 4:
                assert body.find_element(By.ID, "no-plugins").is_displayed()
            elif n == 5:
                assert "single candidate" in body.text and "cpu.conv.im2col+relu" in body.text
            elif n == 6:
                assert body.find_element(By.ID, "latency-chart").is_displayed()
                assert "bench.json / " in body.text and "device cpu" in body.text
        assert not nxt.is_enabled()  # last step
        driver.find_element(By.ID, "prev").click()
        shown(driver, 5)
        driver.find_element(By.ID, "play").click()  # plays on from step 5 to the last step
        assert driver.find_element(By.ID, "play").text == "pause"
        shown(driver, 6)
        assert severe(driver) == []
    finally:
        driver.quit()


def test_plugin_step_in_browser(tmp_path):
    model = seed_with_nms(tmp_path / "nms.onnx")
    plan, html = tmp_path / "nms.plan", tmp_path / "nms.html"
    kiln("build", model, "-o", plan, "--report", html)
    inspected = json.loads(kiln("inspect", plan, "--json").stdout)
    plugins = [l["name"] for l in inspected["layers"] if l["path"] == "plugin"]
    assert plugins == ["nms"], [(l["name"], l["path"]) for l in inspected["layers"]]
    assert embedded_data(html)["summary"]["layers"] == inspected["layers"]
    driver = browser()
    from selenium.webdriver.common.by import By
    try:
        driver.get(html.resolve().as_uri())
        driver.find_elements(By.CSS_SELECTOR, "nav .dot")[3].click()  # straight to step 4
        body = shown(driver, 4).find_element(By.CLASS_NAME, "body")
        rows = body.find_elements(By.CSS_SELECTOR, "table tr")
        cells = [c.text for c in rows[1].find_elements(By.TAG_NAME, "td")]
        n = len(inspected["layers"])
        assert cells[0] == "nms" and cells[2] == f"layer {n} of {n}", cells
        assert "concat_boxes" in cells[3] and "output det_boxes" in cells[4], cells
        assert body.find_elements(By.CSS_SELECTOR, 'g.node[data-name="nms"]')
        assert not body.find_elements(By.ID, "no-plugins")
        assert severe(driver) == []
    finally:
        driver.quit()


def test_gpu_fields_render(built, tmp_path):
    """GPU plans carry several timed candidates and an FP16 choice per layer; a CPU plan has neither, so the page's
    drawing of them is checked on the seed report with those fields filled in (the page, not kiln, is under test)."""
    _, _, _, html = built
    text = Path(html).read_text(encoding="utf-8")
    data = embedded_data(html)
    layer = data["summary"]["layers"][0]
    layer["precision"] = "fp16"
    layer["tactic"] = "t.fast"
    layer["candidates"] = [{"tactic": "t.slow", "ms": 0.5, "chosen": False},
                           {"tactic": "t.fast", "ms": 0.25, "chosen": True},
                           {"tactic": "t.broken", "error": True, "chosen": False}]
    layer["precision_choice"] = "fp16 0.25 ms < fp32 0.5 ms"
    m = re.search(r'(<script type="application/json" id="kiln-data">)(.*?)(</script>)', text, re.S)
    page = tmp_path / "gpu.html"
    page.write_text(text[:m.start(2)] + json.dumps(data).replace("<", "\\u003c") + text[m.end(2):], encoding="utf-8")
    driver = browser()
    from selenium.webdriver.common.by import By
    try:
        driver.get(page.resolve().as_uri())
        dots = driver.find_elements(By.CSS_SELECTOR, "nav .dot")
        dots[2].click()
        step3 = shown(driver, 3).find_element(By.CLASS_NAME, "body").text
        assert "why this precision" in step3 and "fp16 0.25 ms < fp32 0.5 ms" in step3
        dots[4].click()
        step5 = shown(driver, 5).find_element(By.CLASS_NAME, "body").text
        assert "1 of 11 layers" in step5
        assert "t.fast 0.2500 ms" in step5 and "chosen" in step5 and "t.broken failed" in step5
        assert step5.index("t.fast") < step5.index("t.slow") < step5.index("t.broken")  # fastest first
        assert severe(driver) == []
    finally:
        driver.quit()
