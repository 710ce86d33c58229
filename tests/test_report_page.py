"""The evaluation report page (``index.html``): opened in headless Chromium, sorted, played, and escaped."""

import json
import os
import re
import shutil

import pytest

from asr.score.report import write_report
from asr.score.report_page import write_page
from asr.score.wer import score
from tests.helpers import tone, write_wav

HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & </tr>'


def _browser():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        msg = "Chromium and chromedriver not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(arg)
    options.add_argument("--autoplay-policy=no-user-gesture-required")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.set_script_timeout(60)
    return d


@pytest.fixture(scope="module")
def driver():
    d = _browser()
    yield d
    d.quit()


def _column(driver, table: str, index: int) -> list[str]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[index].text for r in rows]


def _loaded_duration(driver) -> float:
    """The seconds of the page's audio element once its recording loaded (-1: it could not)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; const a = document.getElementById('audio');"
        "if (a.readyState >= 1) done(a.duration); else {"
        "a.addEventListener('loadedmetadata', () => done(a.duration));"
        "a.addEventListener('error', () => done(-1)); }"
    )


def test_the_page_sorts_plays_and_shows_transcripts_as_text(driver, tmp_path):
    from selenium.webdriver.common.by import By

    audio = tmp_path / "audio"
    audio.mkdir()
    refs = {"u1": "one two three", "u2": "four five", "u3": HOSTILE.lower(), "u4": "six"}
    hyps = {"u1": "one two three", "u2": "four nine five", "u3": "x " + HOSTILE, "u4": ""}
    files = {}
    for k, u in enumerate(refs):
        files[u] = str(audio / f"{u}.wav")
        write_wav(files[u], tone(0.5 + 0.25 * k, 16_000, freq=440 + 100 * k), 16_000)
    s = score(refs, hyps)
    out = tmp_path / "report"
    write_report(
        out, s, {"u1": "ann", "u2": "bob", "u3": "ann", "u4": "cy"}, "my set", 200, [("decoding", "greedy")], files
    )
    driver.get((out / "index.html").as_uri())
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    # the summary is the scorer's
    assert driver.find_element(By.ID, "wer").text.startswith(f"WER {100 * s.words.rate:.2f}% [")
    assert driver.title.startswith("my set: WER")
    # hostile transcripts are text: nothing ran, and the characters show
    assert driver.execute_script("return window.pwned === undefined")
    assert "<script>window.pwned = 1</script>" in driver.find_element(By.ID, "utterances").text
    # sorted by errors, most first; a click on a header sorts by it, a second click reverses
    errors = [int(x) for x in _column(driver, "utterances", 3)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    header = driver.find_element(By.CSS_SELECTOR, "#utterances th[data-key='id']")
    header.click()
    assert _column(driver, "utterances", 1) == ["u1", "u2", "u3", "u4"]
    header.click()
    assert _column(driver, "utterances", 1) == ["u4", "u3", "u2", "u1"]
    assert header.get_attribute("aria-sort") == "descending"
    # speakers: worst first, sortable by name
    speakers = _column(driver, "speakers", 0)
    wer = [float(x) for x in _column(driver, "speakers", 4)]
    assert wer == sorted(wer, reverse=True) and set(speakers) == {"ann", "bob", "cy"}
    # a click plays the recording: the audio element loads the linked file (its length is the file's)
    row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#utterances tbody tr") if "u2" in r.text)
    row.find_element(By.CSS_SELECTOR, "button.play").click()
    duration = _loaded_duration(driver)
    assert duration == pytest.approx(0.75, abs=0.01)
    assert driver.find_element(By.ID, "playing").text == "u2"
    assert "../audio/u2.wav" in driver.execute_script("return document.getElementById('audio').getAttribute('src')")
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_page_breaks_the_error_rate_down_by_each_grouping(driver, tmp_path):
    """Groups of the manifest (speechocean762: age and gender) get a chart and a sortable table each."""
    from selenium.webdriver.common.by import By

    refs = {"u1": "one two", "u2": "three four", "u3": "five six", "u4": "seven"}
    hyps = {"u1": "one two", "u2": "three", "u3": "x y", "u4": "seven"}
    groups = {"age": {"u1": "adult", "u2": "child", "u3": "child", "u4": "adult"}, "gender": dict.fromkeys(refs, "f")}
    out = tmp_path / "report"
    write_report(out, score(refs, hyps), name="grouped", bootstrap_samples=50, groups=groups)
    driver.get((out / "index.html").as_uri())
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#groups h2")]
    assert headings == ["By age", "By gender"] and len(driver.find_elements(By.CSS_SELECTOR, "#groups svg")) == 2
    assert _column(driver, "group-0", 0) == ["child", "adult"]  # worst first: 3 errors in 4 words, then none
    assert [float(x) for x in _column(driver, "group-0", 4)] == [75.0, 0.0]
    driver.find_element(By.CSS_SELECTOR, "#group-0 th[data-key='speaker']").click()
    assert _column(driver, "group-0", 0) == ["adult", "child"]


def test_an_embedded_recording_plays_from_the_page_alone(driver, tmp_path):
    """``embed_audio``: the page carries its recordings (Ogg Opus), so it plays with the files gone."""
    from selenium.webdriver.common.by import By

    wav = write_wav(tmp_path / "u1.wav", tone(1.25, 8_000), 8_000)
    out = tmp_path / "report"
    write_report(out, score({"u1": "one"}, {"u1": "two"}), name="shared", audio={"u1": str(wav)}, embed_audio=True)
    wav.unlink()
    driver.get((out / "index.html").as_uri())
    driver.find_element(By.CSS_SELECTOR, "#utterances button.play").click()
    duration = _loaded_duration(driver)
    assert duration == pytest.approx(1.25, abs=0.03)
    assert driver.execute_script("return document.getElementById('audio').src").startswith("data:audio/ogg;base64,")
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_a_page_of_2500_utterances_renders_every_row(driver, tmp_path):
    from selenium.webdriver.common.by import By

    words = "the cat sat on a mat with my hat".split()
    refs = {f"spk{k % 125:03d}_{k:05d}": " ".join(words[(k + i) % 9] for i in range(8)) for k in range(2500)}
    hyps = {u: r.replace("cat", "bat") if k % 3 else r for k, (u, r) in enumerate(refs.items())}
    s = score(refs, hyps)
    page = write_page(tmp_path, s, "big", {u: u[:6] for u in refs})
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page.read_text()).group(1))
    assert len(data["utterances"]) == 2500 and len(data["speakers"]) == 125
    driver.get(page.as_uri())
    assert len(driver.find_elements(By.CSS_SELECTOR, "#utterances tbody tr")) == 2500
    swapped = sum(r.split().count("cat") for k, r in enumerate(refs.values()) if k % 3)
    assert driver.find_element(By.CSS_SELECTOR, "#subs tbody tr").text.split() == ["cat", "bat", str(swapped)]


def test_the_recipe_pages_show_the_numbers_of_results_md(driver, fsdd_work):
    from selenium.webdriver.common.by import By

    results = (fsdd_work / "RESULTS.md").read_text()
    for name in ("isolated/test", "connected/test"):
        assert f"[{name}](score/{name}/index.html)" in results
        row = next(line for line in results.splitlines() if line.startswith(f"| {name} |"))
        wer_cell = row.split("|")[4].strip()  # "0.50 [0.00, 1.50]"
        driver.get((fsdd_work / "score" / name / "index.html").as_uri())
        assert driver.find_element(By.ID, "wer").text == f"WER {wer_cell.replace(' [', '% [')}"
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        assert len(driver.find_elements(By.CSS_SELECTOR, "#utterances tbody tr")) > 50


def test_the_speechocean762_devtest_page_shows_results_md_and_its_groups(driver, so762_work):
    from selenium.webdriver.common.by import By

    results = (so762_work / "RESULTS.md").read_text()
    row = next(line for line in results.splitlines() if line.startswith("| devtest |"))
    driver.get((so762_work / "score" / "devtest" / "index.html").as_uri())
    assert driver.find_element(By.ID, "wer").text == f"WER {row.split('|')[4].strip().replace(' [', '% [')}"
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#groups h2")] == ["By age", "By gender"]
    assert sorted(_column(driver, "group-0", 0)) == ["adult", "child"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#speakers tbody tr")) == 6  # devtest's 6 speakers


def test_the_training_page_tables_every_evaluation_and_setting(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from asr.score.training_page import write_training_page

    history = [
        {
            "update": 50 * k,
            "epoch": k / 2,
            "train_loss": 3 / k,
            "dev_loss": 3.5 / k,
            "dev_wer": 1 / k,
            "dev_cer": 0.5 / k,
            "lr": 1e-3,
            "seconds": 10.0 * k,
        }
        for k in range(1, 7)
    ]
    page = write_training_page(tmp_path / "training.html", history, {"model.hidden": 256, "note": HOSTILE})
    driver.get(page.as_uri())
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert len(driver.find_elements(By.CSS_SELECTOR, "#history tr")) == 1 + len(history)
    assert driver.execute_script("return window.pwned === undefined")
    assert HOSTILE in driver.find_element(By.ID, "settings").text
    assert driver.find_element(By.CSS_SELECTOR, "#chart svg")


def test_asr_wer_compare_writes_the_paired_comparison_page(driver, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.helpers import asr

    refs = {f"u{k}": "one two three four" for k in range(6)}
    ours = {**refs, "u1": "one two tree four", "u2": "one three four"}
    theirs = {**refs, "u2": "one too three for", "u3": "one two three four five", "u4": "won two three four"}
    files = {}
    for name, table in (("ref", refs), ("ours", ours), ("theirs", theirs)):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text("".join(f"{u} {t}\n" for u, t in table.items()))
    out = tmp_path / "report"
    r = asr("wer", str(files["ref"]), str(files["ours"]), "--compare", str(files["theirs"]), "--out", str(out))
    assert "probability that" in r.stdout
    driver.get((out / "index.html").as_uri())
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert driver.find_element(By.ID, "comparison").is_displayed()
    text = driver.find_element(By.ID, "comparison-summary").text
    assert "3 utterance(s) better, 1 worse" in text, text
    ids = _column(driver, "changed", 0)
    assert sorted(ids) == ["u1", "u2", "u3", "u4"] and ids[0] == "u2"  # the most errors saved first


def test_speaker_names_with_dollars_and_placeholders_are_drawn_as_plain_text(tmp_path):
    """``$5 and $6`` was TeX math to matplotlib (a value with one ``$`` raised after decoding, so no page), and a
    speaker ``__DATA__`` had the page's whole JSON pasted into the chart's label by chained replacements."""
    refs = {"u1": "a b c", "u2": "a b", "u3": "c"}
    hyps = {"u1": "a b", "u2": "a b", "u3": "d"}
    speakers = {"u1": "$5 and $6", "u2": "__DATA__", "u3": "cost $3"}
    groups = {"region": {"u1": "$x^2$", "u2": "__CHART__", "u3": "__TITLE__"}}
    write_page(tmp_path, score(refs, hyps), "set", speakers, groups=groups)
    page = (tmp_path / "index.html").read_text()
    chart = page[page.index('<div id="chart">') : page.index('<div id="groups">')]
    assert "$5 and $6" in chart and "cost $3" in chart and "__DATA__" in chart
    assert page.count('<script type="application/json" id="data">') == 1 and page.count('{"summary": ') == 1
    assert "$x^2$" in page and page.count("<title>") == 1
