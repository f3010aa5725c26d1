"""The web page in real headless Chromium (Debian's chromium, driven by Playwright) against the API
under gunicorn and a real worker: type, listen, download, history, errors, language, API key, and
live mode (spoken as it is typed, over the WebSocket /v1/live)."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import requests
import soundfile as sf

from tests.support import ARTIFACTS, Gunicorn, wait_until

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing of Chromium's own phoning home: the page must be the only traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AUDIO_READY = """() => {
  const a = document.getElementById('player');
  return Boolean(a.currentSrc) && a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0;
}"""
TEXT = "今天天气很好。我们一起去公园散步吧。路上可以买一杯咖啡。然后在湖边坐一会儿。"
# Long enough (12 segments, about 25 s of audio) to be running through several of the page's
# polls: a four-sentence job can now finish between two of them.
LONG_TEXT = TEXT * 3


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file() or shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed (/usr/bin/chromium): run `make test-system-deps`, "
                    "which does `apt-get install -y chromium`; the browser tests never download a browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (the Python package) is not installed: `make install-test` installs the test extras")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 3}


@contextlib.contextmanager
def open_page(browser, cluster, **context_options):
    context_options.setdefault("viewport", {"width": 1100, "height": 1000})
    context = browser.new_context(locale="zh-CN", accept_downloads=True, **context_options)
    page = context.new_page()
    seen, problems = [], []
    page.on("request", lambda request: seen.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    # Chromium logs every 4xx answer as a console error; the tests provoke those on purpose.
    page.on("console", lambda message: problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.goto(f"{cluster.url}/")
    page.wait_for_selector("body[data-ready=true]")
    yield page
    context.close()
    # Everything the page fetched came from the app itself: no CDN, no external request.
    strangers = [url for url in seen if not url.startswith((cluster.url + "/", "blob:", "data:"))]
    assert not strangers
    assert not problems


@pytest.fixture
def page(browser, cluster):
    with open_page(browser, cluster) as page:
        yield page


def test_type_submit_listen_download_and_replay(page, cluster, sample_rate):
    assert page.locator("#voice option").all_inner_texts()[0].startswith("baker")
    assert "开心" in page.locator("#emotion option").all_inner_texts()
    assert page.locator("#counter").inner_text() == "0 / 100000"
    page.fill("#text", LONG_TEXT)
    assert page.locator("#counter").inner_text() == f"{len(LONG_TEXT)} / 100000"
    page.select_option("#emotion", "happy")
    page.fill("#speed", "1.1")
    assert page.locator("#speed-value").inner_text() == "1.10×"
    # Keep every status line the page shows, to see the progress bar move through the segments.
    page.evaluate("""() => {
      window.statusLines = [];
      new MutationObserver(() => window.statusLines.push(document.getElementById('status-line').textContent))
        .observe(document.getElementById('status-line'), {childList: true, characterData: true, subtree: true});
    }""")

    page.click("#submit")
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    assert page.locator("#status-line").inner_text() == "合成完成"
    assert page.eval_on_selector("#progress", "p => p.value === p.max")
    lines = page.evaluate("window.statusLines")
    assert any(line.startswith("正在合成：第") and "/ 12 段" in line for line in lines), lines
    duration = page.eval_on_selector("#player", "a => a.duration")
    assert duration > 2

    href = page.get_attribute("#download", "href")
    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename.endswith(".wav")
    samples, rate = sf.read(download.path())
    assert rate == sample_rate and len(samples) / rate == pytest.approx(duration, abs=0.05)
    same = requests.get(cluster.url + href, timeout=10)
    assert same.status_code == 200 and same.headers["Content-Type"] == "audio/wav"
    job_id = href.split("/")[3]
    job = requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["options"]["emotion"] == "happy" and job["options"]["speed"] == 1.1

    history = page.locator("#history li")
    assert history.count() == 1 and TEXT[:20] in history.first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web.png"), full_page=True)

    # The history lives in this browser: after a reload it is still there, and replays.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#result").is_hidden()
    page.click("#history li button.replay")
    page.wait_for_function(AUDIO_READY, timeout=30_000)
    assert page.get_attribute("#download", "href") == href


def test_errors_are_shown_in_words_in_either_language(page):
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == "请先输入要朗读的文字。"

    page.click("#lang-toggle")
    assert error.inner_text() == "Please type some text to speak first."
    assert page.locator("#submit").inner_text() == "Synthesize"
    assert page.evaluate("document.documentElement.lang") == "en"

    page.fill("#text", "好" * 100_001)
    assert "over" in page.get_attribute("#counter", "class")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('too long')")
    assert error.inner_text() == "The text is too long: at most 100000 characters. Please shorten it."
    page.fill("#text", "")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error').textContent.startsWith('Please type')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-error-en.png"), full_page=True)

    # The choice of language is remembered.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#submit").inner_text() == "Synthesize"


def test_api_key_is_kept_and_sent_as_bearer(page):
    page.click("#key-box summary")
    page.fill("#api-key", "vk-test-key")
    with page.expect_request(lambda request: request.url.endswith("/v1/voices")) as asked:
        page.click("#key-save")
    assert asked.value.headers["authorization"] == "Bearer vk-test-key"
    page.click("#key-box summary")

    # With a key the page fetches the audio itself (an <audio> cannot send the header) and plays it.
    page.fill("#text", "你好。")
    with page.expect_request(lambda request: request.url.endswith("/v1/jobs") and request.method == "POST") as sent:
        page.click("#submit")
    assert sent.value.headers["authorization"] == "Bearer vk-test-key"
    page.wait_for_function(AUDIO_READY, timeout=60_000)
    assert page.eval_on_selector("#player", "a => a.currentSrc.startsWith('blob:')")

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#api-key") == "vk-test-key"


def test_with_keys_configured_the_page_asks_for_one_and_then_works(browser, cluster, tmp_path, sample_rate):
    import hashlib

    key = "vxq_web-test-key"
    keyed = Gunicorn(cluster.redis_url, cluster.data_dir, tmp_path, workers=1,
                     VOXQ_API_KEYS=f"webtenant:{hashlib.sha256(key.encode()).hexdigest()}")
    context = browser.new_context(locale="zh-CN", accept_downloads=True)
    try:
        keyed.wait_ready()
        page = context.new_page()
        page.goto(f"{keyed.url}/")
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator("#error").inner_text() == "需要有效的 API 密钥：请点右上角的“API 密钥”填写。"

        page.click("#key-box summary")
        page.fill("#api-key", key)
        page.click("#key-save")
        page.wait_for_function("() => document.getElementById('error').hidden")
        page.click("#key-box summary")
        page.fill("#text", "密钥测试。")
        page.click("#submit")
        page.wait_for_function(AUDIO_READY, timeout=60_000)
        # An <audio> cannot send the key: the page fetched the file itself, and the link saves it.
        assert page.eval_on_selector("#player", "a => a.currentSrc.startsWith('blob:')")
        with page.expect_download() as download_info:
            page.click("#download")
        samples, rate = sf.read(download_info.value.path())
        assert rate == sample_rate and len(samples) > rate // 2
    finally:
        context.close()
        keyed.stop()


LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。" * 12
IN_VIEW = """(id) => {
  const r = document.getElementById(id).getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
}"""
# An indeterminate <progress> (no value attribute) is the one that animates.
PROGRESS_ANIMATES = """() => {
  const p = document.getElementById('progress');
  return p.offsetParent !== null && !p.hasAttribute('value');
}"""


def history_item(page, job_id):
    return page.locator(f'#history li[data-id="{job_id}"]')


def submitted_job_id(page) -> str:
    page.wait_for_function("() => JSON.parse(localStorage.getItem('voxq.history') || '[]').length > 0")
    return page.evaluate("JSON.parse(localStorage.getItem('voxq.history'))[0].id")


@pytest.mark.parametrize("form", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_failed_job_looks_failed_and_focus_follows_the_job(browser, cluster, form):
    with open_page(browser, cluster, **form) as page:
        # 兙 has no reading: the API's cheap check lets it pass, and the worker fails the job.
        page.fill("#text", "兙")
        # Keyboard only: Ctrl + Enter in the text area.
        page.focus("#text")
        page.keyboard.press("Control+Enter")
        page.wait_for_function("() => document.getElementById('result').dataset.status === 'failed'",
                               timeout=60_000)
        assert page.locator("#status-line").inner_text() == "失败"
        assert page.locator("#error").inner_text() == "这段文字里没有可以朗读的字符，请输入中文文字。"
        assert page.locator("#progress").is_hidden()
        assert not page.evaluate(PROGRESS_ANIMATES)
        assert page.locator("#cancel").is_hidden()
        # Focus went to the job's status, not to <body>.
        assert page.evaluate("document.activeElement.id") == "status-line"
        job_id = submitted_job_id(page)
        item = history_item(page, job_id)
        assert item.locator(".badge").inner_text() == "失败"
        assert item.locator("button.replay").is_hidden()
        assert page.evaluate(IN_VIEW, "status-line")
        # The same after a reload: the history keeps no Play button for a job without audio.
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert history_item(page, job_id).locator("button.replay").is_hidden()


def test_an_empty_submit_puts_the_focus_back_in_the_text(page):
    page.focus("#submit")
    page.keyboard.press("Enter")
    page.locator("#error").wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "text"


def test_history_badge_follows_the_job_and_cancel_stops_it(page, cluster):
    page.fill("#text", LONG)
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('status-line').textContent.startsWith('正在合成：第')",
                           timeout=60_000)
    job_id = submitted_job_id(page)
    badge = history_item(page, job_id).locator(".badge")
    assert badge.inner_text() == "合成中"
    cancel = page.locator("#cancel")
    assert cancel.is_visible() and cancel.inner_text() == "取消"
    with page.expect_request(lambda r: r.method == "DELETE" and r.url.endswith(f"/v1/jobs/{job_id}")):
        cancel.click()
    page.wait_for_function("() => document.getElementById('result').dataset.status === 'canceled'")
    assert page.locator("#status-line").inner_text() == "已取消"
    assert page.locator("#progress").is_hidden() and cancel.is_hidden()
    # A canceled job has no audio: no empty player, no download link to nowhere.
    assert page.locator("#player-box").is_hidden() and page.get_attribute("#download", "href") is None
    assert page.eval_on_selector("#player", "a => a.paused && !a.hasAttribute('src')")
    page.click("#lang-toggle")
    assert page.locator("#status-line").inner_text() == "Canceled"
    page.click("#lang-toggle")
    page.wait_for_function(f"""() => document.querySelector('#history li[data-id="{job_id}"] .badge')
                                       .textContent === '已取消'""")
    assert history_item(page, job_id).locator("button.replay").is_hidden()
    assert requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()["status"] == "canceled"


def test_on_a_phone_the_result_comes_into_view_and_the_shortcut_hint_is_gone(browser, cluster):
    with open_page(browser, cluster, **PHONE) as page:
        assert page.locator(".hint").is_hidden()  # no Ctrl + Enter on a touch screen
        # The sliders are named by their labels, not by the value shown beside them.
        for name in ("语速", "音高", "音量"):
            assert page.get_by_role("slider", name=name, exact=True).count() == 1
        page.fill("#text", "你好。")
        assert not page.evaluate(IN_VIEW, "result") and page.evaluate("window.scrollY") == 0
        page.locator("#submit").tap()
        page.wait_for_function(IN_VIEW, arg="progress")
        page.wait_for_function(AUDIO_READY, timeout=60_000)
        page.wait_for_function(IN_VIEW, arg="player")
        assert page.locator("#download").is_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-phone.png"))


def test_at_1280_the_voice_and_its_licence_note_are_whole(browser, cluster):
    with open_page(browser, cluster, **DESKTOP) as page:
        assert page.locator(".hint").is_visible()
        note = page.locator("#voice-note")
        # In the page's language, licence note included: no English on the Chinese page.
        assert note.is_visible() and note.inner_text() == "baker：标贝中文普通话女声（训练语料仅限非商业用途）"
        box = note.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280
        assert page.evaluate("(() => { const n = document.getElementById('voice-note'); "
                             "return n.scrollWidth <= n.clientWidth; })()")
        # The menu itself holds only the short name, which its width always fits.
        assert page.evaluate("""() => {
          const s = document.getElementById('voice');
          const c = document.createElement('canvas').getContext('2d');
          c.font = getComputedStyle(s).font;
          return c.measureText(s.options[s.selectedIndex].text).width < s.clientWidth - 24;
        }""")
        for name in ("Speed", "Pitch", "Volume"):
            assert page.get_by_role("slider", name=name, exact=True).count() == 0  # still Chinese
        page.click("#lang-toggle")
        for name in ("Speed", "Pitch", "Volume"):
            assert page.get_by_role("slider", name=name, exact=True).count() == 1
        assert note.inner_text() == "baker: Baker corpus Mandarin female voice (non-commercial use only)"


def test_pcm_with_rate_volume_and_marks(page, cluster):
    page.select_option("#format", "pcm")
    page.select_option("#sample-rate", "16000")
    page.fill("#volume", "0.5")
    assert page.locator("#volume-value").inner_text() == "0.50×"
    page.check("#marks")
    page.fill("#text", "你好，世界。")
    page.click("#submit")
    page.locator("#player-box").wait_for(state="visible", timeout=60_000)
    info = page.locator("#pcm-info")
    assert info.is_visible() and info.inner_text() == "16000 Hz · 16 位 · 单声道（小端）"
    assert page.locator("#player").is_hidden() and page.locator("#pcm-note").is_visible()
    marks = page.locator("#marks-link")
    assert marks.is_visible()
    found = requests.get(cluster.url + marks.get_attribute("href"), timeout=10).json()
    assert [m["value"] for m in found if m["type"] == "char"][:2] == ["你", "好"]
    job_id = page.get_attribute("#download", "href").split("/")[3]
    options = requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()["options"]
    assert options["format"] == "pcm" and options["sample_rate"] == 16000
    assert options["volume"] == 0.5 and options["marks"] is True

    # Opus takes only some rates: the menu offers just those.
    page.select_option("#format", "opus")
    rates = page.eval_on_selector_all("#sample-rate option", "os => os.map(o => o.value)")
    assert rates == ["", "8000", "16000", "24000", "48000"]


def test_api_docs_page_renders_the_operations(browser, cluster):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen, problems = [], []
    page.on("request", lambda request: seen.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    try:
        with page.expect_response(lambda r: r.url == f"{cluster.url}/openapi.json") as spec:
            page.goto(f"{cluster.url}/docs")
        assert spec.value.status == 200
        page.locator(".opblock").first.wait_for(timeout=30_000)
        assert page.locator(".info .title").inner_text().startswith("voxq")
        summaries = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/jobs" in [s.replace("\u200b", "") for s in summaries]
        assert page.locator(".opblock-post").count() >= 1 and page.locator(".opblock-delete").count() >= 1
        # Open one operation: its parameters and responses render.
        page.locator(".opblock-delete .opblock-summary").first.click()
        page.locator(".opblock-delete .responses-table").first.wait_for()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs.png"))
    finally:
        context.close()
    strangers = [url for url in seen if not url.startswith((cluster.url + "/", "blob:", "data:"))]
    assert not strangers, strangers
    assert not problems, problems


def test_preview_and_ssml_on_the_page(page, cluster):
    page.fill("#text", "行长在2023年还钱。")
    page.click("#preview-button")
    page.locator("#preview").wait_for(state="visible")
    assert page.locator("#preview-normalized").inner_text() == "行长在二零二三年还钱。"
    first = page.locator("#preview-segments ruby").nth(0)
    assert first.get_attribute("data-source") == "word" and first.get_attribute("title") == "hang2 · 词语读音"
    # Tone marks, as people read pinyin; the tone number stays in the title.
    assert page.locator("#preview-segments rt").nth(0).inner_text() == "háng"
    # The segment line reads as the sentence: its punctuation is there, between the characters.
    assert page.locator("#preview-segments li").nth(0).evaluate(
        "li => Array.from(li.childNodes).map(n => n.firstChild ? n.firstChild.textContent : n.textContent).join('')"
    ) == "行长在二零二三年还钱。"
    # Big enough to read: the pinyin is no smaller than the page's small print.
    assert page.eval_on_selector("#preview-segments rt", "rt => parseFloat(getComputedStyle(rt).fontSize)") >= 13
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#preview").screenshot(path=str(ARTIFACTS / "web-reading.png"))
    # SSML: the toggle sends text_type, the preview shows the fixed reading, and a job is spoken.
    page.check("#ssml")
    # Ticking SSML says what the box now takes: a document for an example, and a line of help.
    assert page.get_attribute("#text", "placeholder").startswith("<speak>")
    assert page.locator("#ssml-help").is_visible() and "<speak>" in page.locator("#ssml-help").inner_text()
    # Plain text with SSML ticked is told so, in Chinese, not with the XML parser's complaint.
    page.fill("#text", "今天天气很好。")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('不是 SSML 文档')")
    assert page.locator("#error").inner_text() == ("勾选了“SSML 标记”，但这段文字不是 SSML 文档（SSML 以 <speak> 开头）。"
                                                   "朗读普通文字请取消勾选。")
    page.fill("#text", '<speak><phoneme alphabet="py" ph="xing2 zhang3">行长</phoneme><break time="300ms"/>好</speak>')
    page.click("#preview-button")
    page.wait_for_function("() => document.querySelector('#preview-segments rt').textContent === 'xíng'")
    assert page.locator("#preview-segments ruby").nth(0).get_attribute("class") == "source-ssml"
    page.click("#submit")
    # The player shows while the job still speaks (it plays the stream): wait for the end.
    page.wait_for_function("() => document.getElementById('status-line').textContent === '合成完成'",
                           timeout=60_000)
    jobs = requests.get(f"{cluster.url}/v1/jobs", timeout=10).json()["jobs"]
    assert jobs[0]["status"] == "succeeded"
    # The history shows what the document says, not its markup, and that it was SSML.
    item = page.locator("#history li").first
    assert item.locator(".snippet").inner_text() == "行长好"
    assert item.locator(".badge.kind").inner_text() == "SSML"
    # An unsupported document is refused in Chinese, with the element, the line and the column.
    page.fill("#text", "<speak><voice>好</voice></speak>")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('第 1 行')")
    assert page.locator("#error").inner_text() == (
        "不支持 SSML 元素 <voice>（第 1 行，第 8 列）。支持的元素：speak, p, s, break, prosody, emphasis, say-as, "
        "phoneme, sub, mark。")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-preview.png"), full_page=True)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_the_page_plays_while_the_job_is_still_speaking(page, cluster, fmt):
    page.select_option("#format", fmt)
    page.fill("#text", LONG)
    page.click("#submit")
    # The player is on the job's stream and its clock runs while the job has chunks to go.
    page.wait_for_function("""() => {
      const a = document.getElementById('player');
      return a.currentSrc.endsWith('/stream') && a.currentTime > 0.5 && !a.paused;
    }""", timeout=60_000)
    job_id = submitted_job_id(page)
    job = requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "running", job["progress"]
    assert job["progress"]["chunks_done"] < job["progress"]["chunks_total"]
    # Nobody knows the length yet: the page says so, and hides the browser's guess of it.
    clock = page.locator("#player-time")
    assert clock.is_visible() and "正在生成，总时长待定" in clock.inner_text()
    assert page.locator("#download").is_hidden()  # no file yet to download
    assert page.eval_on_selector("#player", "a => a.classList.contains('streaming')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#player-box").screenshot(path=str(ARTIFACTS / f"web-streaming-{fmt}.png"))
    # It plays on through the end of the job, and the download is the finished file.
    page.wait_for_function("() => document.getElementById('status-line').textContent === '合成完成'",
                           timeout=120_000)
    assert page.eval_on_selector("#player", "a => a.currentSrc").endswith("/stream")
    assert page.get_attribute("#download", "href").endswith(f"/v1/jobs/{job_id}/audio")
    page.wait_for_function("() => document.getElementById('player').currentTime > 4", timeout=30_000)
    assert page.eval_on_selector("#player", "a => a.error") is None
    # Once the job is done its length is known, and shown.
    total = requests.get(f"{cluster.url}/v1/jobs/{job_id}", timeout=10).json()["result"]["duration_s"]
    shown = f"{int(total) // 60}:{int(total) % 60:02d}"
    page.wait_for_function("(total) => document.getElementById('player-time').textContent.endsWith('/ ' + total)",
                           arg=shown)
    page.locator("#player-box").screenshot(path=str(ARTIFACTS / f"web-streamed-{fmt}.png"))
    # Paused, the player moves to the finished file where it was: the browser's own clock and
    # timeline come back, with the file's true length, and seeking works.
    at = page.evaluate("() => { const a = document.getElementById('player'); a.pause(); return a.currentTime; }")
    page.wait_for_function("""() => {
      const a = document.getElementById('player');
      return a.currentSrc.endsWith('/audio') && a.readyState >= 1 && !a.classList.contains('streaming');
    }""")
    player = page.evaluate("() => { const a = document.getElementById('player'); "
                           "return {duration: a.duration, at: a.currentTime}; }")
    assert player["duration"] == pytest.approx(total, abs=0.1)
    assert player["at"] == pytest.approx(at, abs=0.5)
    assert page.locator("#player-time").is_hidden()


def test_aac_and_the_telephone_formats_from_the_page_decoded_by_chromium(page, cluster):
    # G.711 is 8 kHz only: the rate menu offers just that, and the loudness default says -20.
    page.select_option("#format", "mulaw")
    assert page.eval_on_selector_all("#sample-rate option", "os => os.map(o => o.value)") == ["8000"]
    assert "-20 LUFS" in page.locator("#loudness option").first.inner_text()
    href = None
    for fmt in ("aac", "m4a"):
        page.select_option("#format", fmt)
        assert "-23 LUFS" in page.locator("#loudness option").first.inner_text()
        page.select_option("#loudness", "-16")
        page.fill("#text", "今天天气很好。我们一起去公园散步吧。")
        page.click("#submit")
        # This job's own download link, not the one before it.
        page.wait_for_function("""(before) => {
          const link = document.getElementById('download').getAttribute('href');
          return document.getElementById('result').dataset.status === 'succeeded' && link && link !== before;
        }""", arg=href, timeout=60_000)
        href = page.get_attribute("#download", "href")
        job = requests.get(f"{cluster.url}/v1/jobs/{href.split('/')[3]}", timeout=10).json()
        assert job["options"]["format"] == fmt and job["options"]["loudness"] == -16
        # Chromium's own decoder (a second one, beside FFmpeg's encoder in the worker) reads it.
        decoded = page.evaluate("""async (url) => {
          const data = await (await fetch(url)).arrayBuffer();
          const buffer = await new AudioContext().decodeAudioData(data);
          let peak = 0;
          for (const x of buffer.getChannelData(0)) peak = Math.max(peak, Math.abs(x));
          return {seconds: buffer.duration, peak};
        }""", href)
        # ADTS cannot say how much priming and padding the encoder added at the ends, and decoders
        # differ in what they keep (FFmpeg's adds 0.07 s here, Chromium's 0.2 s); M4A says.
        slack = 0.25 if fmt == "aac" else 0.05
        assert decoded["seconds"] == pytest.approx(job["result"]["duration_s"], abs=slack)
        assert decoded["peak"] > 0.05
        page.wait_for_function(AUDIO_READY, timeout=30_000)  # and the page's <audio> plays it


NARROW = {"viewport": {"width": 390, "height": 844}}  # a narrow window with a keyboard: the hint shows
ONE_LINE = """(id) => {
  const range = document.createRange();
  range.selectNodeContents(document.getElementById(id));
  return new Set(Array.from(range.getClientRects(), (r) => Math.round(r.top))).size === 1;
}"""


@pytest.mark.parametrize("form", [DESKTOP, NARROW, PHONE], ids=["1280", "390", "390-touch"])
def test_no_button_breaks_inside_its_word(browser, cluster, form):
    with open_page(browser, cluster, **form) as page:
        assert page.locator(".hint").is_visible() == (form is not PHONE)
        for button in ("submit", "preview-button"):
            assert page.evaluate(ONE_LINE, button), button
        name = {id(DESKTOP): "1280", id(NARROW): "390", id(PHONE): "390-touch"}[id(form)]
        # A text of its own: a text another test spoke would come from the cache, done at once.
        page.fill("#text", f"{name}号窗口。" + LONG)
        page.click("#submit")
        cancel = page.locator("#cancel")
        page.wait_for_function("() => document.getElementById('status-line').textContent.startsWith('正在合成')",
                               timeout=60_000)
        assert cancel.is_visible()
        assert page.evaluate(ONE_LINE, "cancel")
        ARTIFACTS.mkdir(exist_ok=True)
        # The viewport only: a full-page capture drops Chromium's touch emulation while it shoots
        # (the hint reappears in the picture though the page hides it).
        page.evaluate("document.querySelector('.actions').scrollIntoView({block: 'start'})")
        page.screenshot(path=str(ARTIFACTS / f"web-buttons-{name}.png"))
        cancel.click()
        page.wait_for_function("() => document.getElementById('result').dataset.status === 'canceled'")


def test_a_failed_submit_leaves_nothing_of_the_job_before(page):
    page.fill("#text", "你好。")
    page.click("#preview-button")
    page.locator("#preview").wait_for(state="visible")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('status-line').textContent === '合成完成'",
                           timeout=60_000)
    page.wait_for_function(AUDIO_READY, timeout=30_000)
    page.fill("#text", "😀🎉")
    page.click("#preview-button")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('没有可以朗读')")
    assert page.locator("#preview").is_hidden()  # the reading of the text before is no answer
    page.click("#submit")
    page.wait_for_function("() => !document.getElementById('error').hidden")
    # Refused at once (no job): the error, and nothing of the job before under it.
    assert page.locator("#error").inner_text() == "这段文字里没有可以朗读的字符，请输入中文文字。"
    assert page.locator("#result").is_hidden() and page.locator("#preview").is_hidden()
    assert page.eval_on_selector("#player", "a => a.paused && !a.hasAttribute('src')")
    assert page.locator("#history li").count() == 1  # the refused text made no job
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-refused.png"), full_page=True)


def test_the_counter_counts_as_the_server_does(page):
    page.fill("#text", "好" * 5 + "\n\n")
    assert page.locator("#counter").inner_text() == "5 / 100000"


# ---- live mode: spoken as it is typed, over the WebSocket /v1/live ----------------------------------
LIVE = "document.getElementById('live-box').dataset"
LIVE_MARK = "() => (document.querySelector('#live-said mark') || {}).textContent"


def live_frames(page) -> dict:
    """What the page's live sockets send and receive, as Playwright sees them on the wire."""
    frames = {"sent": [], "received": [], "sockets": []}

    def opened(ws):
        frames["sockets"].append(ws)
        ws.on("framesent", lambda payload: frames["sent"].append(payload))
        ws.on("framereceived", lambda payload: frames["received"].append(payload))

    page.on("websocket", opened)
    return frames


def messages(payloads) -> list[dict]:
    return [json.loads(p) for p in payloads if isinstance(p, str)]


def wait_for_mark(page, text: str, timeout: float = 60_000) -> None:
    page.wait_for_function(f"(text) => ({LIVE_MARK})() === text", arg=text, timeout=timeout)


def test_live_mode_speaks_as_one_types_and_marks_the_sentence(browser, cluster, sample_rate):
    with open_page(browser, cluster, **PHONE) as page:
        frames = live_frames(page)
        page.evaluate("localStorage.setItem('voxq.apiKey', 'vk-live-key')")
        page.fill("#text", "这句不读。")  # text in the box before live mode is not read
        page.check("#live")
        # The person types on: the focus is in the box, the Stop button replaces the job's buttons.
        assert page.evaluate("document.activeElement.id") == "text"
        assert page.locator("#job-actions").is_hidden() and page.locator("#live-stop").is_visible()
        assert page.locator("#live-help").inner_text().startswith("边输入边朗读")
        page.wait_for_function(f"() => {LIVE}.liveState === 'ready'")
        assert page.locator("#live-status").inner_text() == "请输入文字，写完一句就会读出来。"

        page.keyboard.press("End")
        page.keyboard.type("今天天气很好。")
        # Spoken at the full stop: its audio is scheduled, and its sentence marked while it plays.
        wait_for_mark(page, "今天天气很好。")
        assert page.evaluate(f"Number({LIVE}.liveAudioMs)") > 500
        assert page.locator("#live-status").inner_text() == "正在朗读…"
        # No sentence end: spoken once the typing pauses (the page flushes).
        page.keyboard.type("我们去公园")
        wait_for_mark(page, "我们去公园")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-live-390.png"))
        # At 390 px nothing overflows sideways and the Stop button keeps to one line.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.evaluate(ONE_LINE, "live-stop")
        assert page.evaluate(IN_VIEW, "live-stop")  # beside the text being typed, not below the form
        # The audio plays out on the AudioContext's clock: then the mark goes and the page listens.
        page.wait_for_function(f"() => {LIVE}.livePlaying === 'false' && {LIVE}.liveState === 'ready'",
                               timeout=30_000)
        assert page.evaluate(LIVE_MARK) is None

        start, *rest = messages(frames["sent"])
        assert start["type"] == "start" and start["format"] == "pcm" and start["api_key"] == "vk-live-key"
        # Only what was typed since the last send: the text before is never sent.
        assert "".join(m["text"] for m in rest if m["type"] == "text") == "今天天气很好。我们去公园"
        assert {"type": "flush"} in rest
        started = messages(frames["received"])[0]
        assert started["type"] == "started" and started["format"] == "pcm"
        # The audio runs at the session's rate (the engine's own here): resampled once, on the way out.
        assert page.evaluate(f"{LIVE}.liveContextRate") == str(sample_rate)
        assert page.evaluate(f"{LIVE}.liveSockets") == "1"

        # Switching live mode off ends the session: `finish`, and the server closes it as finished.
        with frames["sockets"][0].expect_event("close", timeout=30_000):
            page.uncheck("#live")
        assert page.locator("#live-box").is_hidden() and page.locator("#job-actions").is_visible()
        assert page.evaluate(f"{LIVE}.liveState") == "off"
        assert [m["type"] for m in messages(frames["sent"])][-2:] == ["cancel", "finish"]
        wait_until(lambda: cluster.job(started["session_id"])["status"] == "succeeded", 30,
                   what="the session's record ends succeeded")


def test_live_stop_silences_at_once_and_the_session_goes_on(page):
    frames = live_frames(page)
    page.select_option("#sample-rate", "16000")
    page.check("#live")
    page.wait_for_function(f"() => {LIVE}.liveState === 'ready'")
    assert messages(frames["sent"])[0]["sample_rate"] == 16000
    page.keyboard.insert_text(TEXT)  # a paste: one input event, four sentences
    wait_for_mark(page, "今天天气很好。")
    # A message per sentence, so that each is marked (and canceled) on its own.
    assert [m["text"] for m in messages(frames["sent"]) if m["type"] == "text"] == [
        "今天天气很好。", "我们一起去公园散步吧。", "路上可以买一杯咖啡。", "然后在湖边坐一会儿。"]
    # The mark moves on as the next sentence is heard.
    wait_for_mark(page, "我们一起去公园散步吧。")
    assert page.evaluate(f"{LIVE}.livePlaying") == "true"

    assert page.evaluate(f"{LIVE}.liveContextRate") == "16000"
    page.click("#live-stop")
    # At once: nothing plays, nothing is marked, and the status says so.
    assert page.evaluate(f"{LIVE}.livePlaying") == "false"
    assert page.evaluate(LIVE_MARK) is None
    assert page.locator("#live-status").inner_text() == "已停止；继续输入会接着朗读。"
    page.wait_for_function(f"() => {LIVE}.liveCanceled === '1'")
    stopped_at = page.evaluate(f"Number({LIVE}.liveAudioMs)")

    # The same session speaks what is typed next, and nothing of the canceled text came between:
    # the new sentence's audio begins where the counter stood at the cancel.
    page.focus("#text")
    page.keyboard.press("End")
    page.keyboard.type("再见。")
    wait_for_mark(page, "再见。")
    assert page.evaluate(f"Number({LIVE}.liveSentenceMs)") == stopped_at
    assert page.evaluate(f"Number({LIVE}.liveAudioMs)") > stopped_at
    assert page.evaluate(f"{LIVE}.liveSockets") == "1" and len(frames["sockets"]) == 1
    texts = [m for m in messages(frames["sent"]) if m["type"] == "text"]
    assert texts[-1]["text"] == "再见。"

    # An edit inside text already sent: `cancel`, then its sentence again from its start.
    page.fill("#text", (TEXT + "再见。").replace("再见。", "明天见。"))
    wait_for_mark(page, "明天见。")
    sent = messages(frames["sent"])
    assert sent[-2:] == [{"type": "cancel"}, {"type": "text", "text": "明天见。"}]
    page.wait_for_function(f"() => {LIVE}.liveCanceled === '2'")
    assert page.locator("#error").is_hidden()


def test_live_errors_are_shown_in_words_and_typing_on_opens_a_new_session(browser, cluster, tmp_path):
    short = Gunicorn(cluster.redis_url, cluster.data_dir, tmp_path, workers=1, VOXQ_LIVE_MAX_CHARS="10")
    context = browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 1000})
    try:
        short.wait_ready()
        page = context.new_page()
        page.goto(f"{short.url}/")
        page.wait_for_selector("body[data-ready=true]")
        page.check("#live")
        page.wait_for_function(f"() => {LIVE}.liveState === 'ready'")
        page.keyboard.type("你好。")
        wait_for_mark(page, "你好。")
        # Past the session's 10 characters: the server says why and closes; the page says it in words.
        page.keyboard.type("今天天气很好，我们去公园。")
        error = page.locator("#error")
        error.wait_for(state="visible", timeout=30_000)
        assert error.inner_text() == "这次实时朗读已读满 10 字的上限，后面的文字没有读；继续输入会开始新的一次。"
        page.wait_for_function(f"() => {LIVE}.liveState === 'closed' || {LIVE}.liveState === 'speaking'")
        page.click("#lang-toggle")
        assert error.inner_text() == ("This live session has read its limit of 10 characters; the rest was not read. "
                                      "Type on to start a new one.")
        assert page.locator("#live-stop").inner_text() == "Stop"
        # Typing on opens a new session, which speaks, and the old error goes.
        page.focus("#text")
        page.keyboard.press("End")
        page.keyboard.type("再见。")
        wait_for_mark(page, "再见。")
        assert page.evaluate(f"{LIVE}.liveSockets") == "2"
        assert error.is_hidden()
    finally:
        context.close()
        short.stop()
