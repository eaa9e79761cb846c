"""snakemake --report on a finished tiny run: one HTML file with every figure and table, each with a caption,
opened in a real headless browser (Debian's chromium) to check that it loads and that the figures decode."""

from __future__ import annotations

import json
import re
import shutil
import html as html_lib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = ["fig02_lsun_epoch1", "fig03_lsun_epoch5", "fig04_interpolation", "fig05_guided_backprop",
           "fig06_window_dropout", "fig07_vector_arithmetic", "fig08_turn_vector", "fig09_mnist_samples",
           "fig10_faces", "fig11_imagenet"]
TABLES = ["table1_cifar10", "table2_svhn", "table3_mnist"]
# Appended to a copy of the report: once the page (the report's own JavaScript app) has loaded, decode every
# image result in the browser and write what it found into the DOM, which --dump-dom then prints.
PROBE = """
<script>
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "dcgan-probe";
  document.body.appendChild(pre);
  const out = {};
  for (const [path, r] of Object.entries(results)) {
    out[path] = {mime: r.mime_type};
    if (!r.mime_type.startsWith("image/")) continue;
    const img = new Image();
    img.onload = () => { out[path] = {mime: r.mime_type, w: img.naturalWidth, h: img.naturalHeight}; show(); };
    img.onerror = () => { out[path] = {mime: r.mime_type, error: "the image did not decode"}; show(); };
    img.src = r.data_uri;
  }
  function show() { pre.textContent = JSON.stringify(out); }
  show();
});
</script>
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def report(tiny_run) -> tuple[Path, dict]:
    """Build the report of the finished tiny run; returns its path and the `results` object embedded in it."""
    wd, run = tiny_run
    if run.returncode != 0:
        pytest.fail("the tiny run failed (see test_workflow.py::test_tiny_config_runs_the_real_snakefile_end_to_end)")
    out = wd / "report.html"
    res = subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(wd), "--configfile",
                          str(REPO / "presets" / "demo.yaml"), str(REPO / "tests" / "tiny.yaml"), "--report",
                          str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    text = out.read_text()
    m = re.search(r"^\s*var results = (\{.*\});\s*$", text, flags=re.M)
    assert m, "no `var results = {...}` in the report"
    return out, json.loads(m.group(1))


@pytest.mark.slow
def test_report_lists_every_figure_and_table_with_a_caption(report):
    _, results = report
    expected = {f"results/figures/{f}.png" for f in FIGURES} | {
        f"results/tables/{t}.{ext}" for t in TABLES for ext in ("html", "tex")}
    assert expected <= set(results), f"missing from the report: {sorted(expected - set(results))}"
    for path in expected:
        r = results[path]
        caption = " ".join(re.sub(r"<[^>]+>", "", r["caption"]).split())
        assert "of the paper" in caption and "Preset demo" in caption, (path, caption)
        assert "problematic" not in r["caption"] and "System Message" not in r["caption"], (path, r["caption"])
        # demo data are stand-ins, and the caption says so
        assert "not" in caption and "source demo" in caption, (path, caption)
    for f in FIGURES:
        n = int(f[3:5])
        assert f"Figure {n}" in results[f"results/figures/{f}.png"]["caption"], f
    for t in TABLES:
        assert f"Table {t[5]}" in results[f"results/tables/{t}.html"]["caption"], t


@pytest.mark.slow
def test_report_opens_in_headless_chromium_and_the_figures_decode(report, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium); the report's content is still "
                    "checked by test_report_lists_every_figure_and_table_with_a_caption")
    html, _ = report
    probe = tmp_path / "report_probe.html"
    text = html.read_text()
    at = text.rindex("</body>")  # the page's own; the report's bundled JavaScript contains the string too
    probe.write_text(text[:at] + PROBE + text[at:])
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--virtual-time-budget=30000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="dcgan-probe">(.*?)</pre>', res.stdout, flags=re.S)
    assert m, f"the page did not finish loading in chromium:\n{res.stderr[-2000:]}"
    found = json.loads(html_lib.unescape(m.group(1)))
    # the report's JavaScript app rendered its pages (without JavaScript the body only says "Loading ...")
    page = re.sub(r"<(script|noscript|pre)\b.*?</\1>", "", res.stdout, flags=re.S)
    page = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    for text in ("Snakemake Report", "Results", "Figures", "Tables", "dcgan-repro: every table and figure"):
        assert text in page, f"{text!r} is not on the rendered page: {page[:1000]}"
    for f in FIGURES:
        r = found.get(f"results/figures/{f}.png")
        assert r and r["mime"] == "image/png" and "error" not in r, (f, r)
        assert r.get("w", 0) >= 64 and r.get("h", 0) >= 64, (f, r)
    for t in TABLES:
        assert found[f"results/tables/{t}.html"]["mime"] == "text/html"
