"""The rendered book, tested in a real browser.

Every page of ``_build/html`` is served over HTTP on 127.0.0.1 and loaded in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium). For each
page the tests check
that:

- the math is typeset by MathJax: every formula holds an ``mjx-container``, no MathJax
  error box, and no raw ``$$``, ``\\(``, ``\\[`` (or inline TeX between single dollars)
  in the page's text;
- every ``<img>`` has loaded (``complete`` and ``naturalWidth > 0``);
- every internal link (a page of the book, a download, with or without ``#anchor``)
  points to an existing file and, for an anchor, to an element with that id on the
  target page;
- the browser console shows no error (no SEVERE log entry) while the page loads and
  typesets.

The browser cannot reach any host but 127.0.0.1 (``--host-resolver-rules``), so a page
that needs a CDN (MathJax, fonts, scripts) fails here whether or not the machine is
online, as it would for a reader without a network. Each page is loaded as on a first
visit (local storage cleared).

Environment variables:
- ``RNN_COURSE_HTML``: the folder to test instead of ``_build/html``.
- ``CI``: when set, a missing browser, driver or Selenium fails the tests instead of
  skipping them.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import posixpath
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML_DIR = Path(os.environ.get("RNN_COURSE_HTML") or ROOT / "_build" / "html").resolve()

# Pages Sphinx writes whatever the book holds. They are tested only when a page of the
# book links to them (an <a href> or a <form action>), i.e. when a reader can reach
# them.
SPHINX_SPECIAL_PAGES = {"genindex.html", "search.html", "py-modindex.html"}

PAGE_LOAD_TIMEOUT_S = 30
SCRIPT_TIMEOUT_S = 30
MATHJAX_WAIT_MS = 15_000
IMAGE_WAIT_MS = 10_000

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)


# --------------------------------------------------------------------------------------
# Which pages: found by walking the folder, at collection time.


class _RefParser(html.parser.HTMLParser):
    """Collects ids/names (anchors) and the targets of <a href> and <form action>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href") is not None:
            self.refs.append(a["href"])
        if tag == "form" and a.get("action"):
            self.refs.append(a["action"])


@functools.cache
def _parse_static(path: Path) -> _RefParser:
    parser = _RefParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def _is_asset_dir(part: str) -> bool:
    # _static holds theme partials (webpack-macros.html), _sources the page sources,
    # _images the figures; hidden folders are no part of the book either.
    return part.startswith("_") or part.startswith(".")


def find_pages(html_dir: Path) -> list[str]:
    """Every .html page of the book, as paths relative to html_dir (posix), sorted."""
    if not html_dir.is_dir():
        return []
    content: list[str] = []
    special: list[str] = []
    for path in sorted(html_dir.rglob("*.html")):
        rel = path.relative_to(html_dir)
        if any(_is_asset_dir(part) for part in rel.parts[:-1]):
            continue
        (special if rel.as_posix() in SPHINX_SPECIAL_PAGES else content).append(
            rel.as_posix()
        )
    linked: set[str] = set()
    for rel in content:
        for ref in _parse_static(html_dir / rel).refs:
            parts = urllib.parse.urlsplit(ref)
            if parts.scheme or parts.netloc or not parts.path:
                continue
            target = posixpath.normpath(
                posixpath.join(posixpath.dirname(rel), urllib.parse.unquote(parts.path))
            )
            linked.add(target)
    return sorted(content + [rel for rel in special if rel in linked])


PAGES = find_pages(HTML_DIR)


# --------------------------------------------------------------------------------------
# The browser and the server.


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class BrowserMissing(Exception):
    """Chromium, chromedriver or Selenium is not installed."""


def _missing_tool(reason: str) -> None:
    message = f"browser test cannot run: {reason}"
    if _ci():
        pytest.fail(
            message
            + " (CI is set, so this is a failure; .ci/run installs chromium and "
            "chromium-driver)",
            pytrace=False,
        )
    pytest.skip(
        message
        + " (install: apt-get install chromium chromium-driver; selenium comes with "
        "the course extra)"
    )


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths; BrowserMissing says what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError as err:
        raise BrowserMissing(f"Selenium is not installed ({err})") from None
    chromium = _which(CHROMIUM_NAMES)
    if chromium is None:
        raise BrowserMissing(
            "no Chromium on PATH (looked for " + ", ".join(CHROMIUM_NAMES) + ")"
        )
    chromedriver = _which(CHROMEDRIVER_NAMES)
    if chromedriver is None:
        raise BrowserMissing("no chromedriver on PATH (Debian package chromium-driver)")
    return chromium, chromedriver


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    # noqa: A002 - stdlib signature
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def html_dir() -> Path:
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(
            f"no built book at {HTML_DIR} (index.html missing): run `make book` first",
            pytrace=False,
        )
    return HTML_DIR


@pytest.fixture(scope="module")
def server(html_dir: Path):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def driver():
    """A headless Chromium, or the BrowserMissing that says why there is none."""
    try:
        chromium, chromedriver = _find_browser()
    except BrowserMissing as missing:
        yield missing
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rnn-course-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        # Only loopback resolves: anything the book fetches from the internet fails
        # visibly.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--window-size=1280,1024",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=chromedriver, log_output=subprocess.DEVNULL)
    try:
        drv = webdriver.Chrome(service=service, options=options)
    # installed but broken (e.g. driver and browser versions differ): an error
    except Exception as err:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(
            f"Chromium ({chromium}) did not start under {chromedriver}: {err}",
            pytrace=False,
        )
    drv.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    drv.set_script_timeout(SCRIPT_TIMEOUT_S)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Loading one page and reading what the browser shows.

# Runs after the load event: waits for MathJax's first typesetting, makes lazy images
# load, waits for the images and fonts, then reports what is on the page.
INSPECT_JS = r"""
const done = arguments[arguments.length - 1];
const MATHJAX_WAIT_MS = arguments[0], IMAGE_WAIT_MS = arguments[1];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const out = {mathjax: null, mathjaxProblem: null};
  const MJ = window.MathJax;
  if (MJ && MJ.startup && MJ.startup.promise) {
    out.mathjax = MJ.version || "unknown version";
    const result = await Promise.race([
      MJ.startup.promise.then(() => "ok", (e) => "failed: " + e),
      sleep(MATHJAX_WAIT_MS).then(
        () => "did not finish typesetting within " + MATHJAX_WAIT_MS + " ms"),
    ]);
    if (result !== "ok") out.mathjaxProblem = result;
  } else if (MJ) {
    out.mathjaxProblem =
      "MathJax is configured but its script did not run (not loaded?)";
  }

  document.querySelectorAll('img[loading="lazy"]')
    .forEach((img) => { img.loading = "eager"; });
  const pending = Array.from(document.images).filter((img) => !img.complete)
    .map((img) => new Promise((r) => {
      img.addEventListener("load", r, {once: true});
      img.addEventListener("error", r, {once: true});
    }));
  await Promise.race([Promise.all(pending), sleep(IMAGE_WAIT_MS)]);
  if (document.fonts && document.fonts.ready) {
    await Promise.race([document.fonts.ready, sleep(5000)]);
  }
  await sleep(150);  // let late console messages arrive

  out.images = Array.from(document.images).map((img) => ({
    src: img.getAttribute("src"), url: img.currentSrc || img.src,
    complete: img.complete, naturalWidth: img.naturalWidth,
    alt: img.getAttribute("alt"),
  }));

  const formulas = Array.from(document.querySelectorAll(".math"));
  out.formulas = formulas.length;
  out.untypeset = formulas.filter((el) => !el.querySelector("mjx-container"))
    .map((el) => el.textContent.trim().slice(0, 80));
  out.mjxContainers = document.querySelectorAll("mjx-container").length;
  out.mathErrors = Array.from(document.querySelectorAll("mjx-merror"))
    .map((el) => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 120));

  const body = document.body.cloneNode(true);
  body.querySelectorAll(
    "script, style, noscript, template, textarea, pre, code, kbd, samp, mjx-container")
    .forEach((el) => el.remove());
  out.text = body.textContent;

  out.links = Array.from(document.querySelectorAll("a[href]")).map((a) => a.href)
    .concat(Array.from(document.querySelectorAll("form[action]")).map((f) => f.action));
  out.ids = Array.from(document.querySelectorAll("[id]")).map((el) => el.id)
    .concat(Array.from(document.querySelectorAll("a[name]")).map((el) => el.name));
  return out;
})().then(done, (e) => done({scriptError: String(e && e.stack || e)}));
"""

# Raw TeX that MathJax should have replaced. Code (pre/code) is removed from the text
# first.
RAW_MATH = [
    ("$$", re.compile(r"\$\$")),
    ("\\(", re.compile(r"\\\(")),
    ("\\)", re.compile(r"\\\)")),
    ("\\[", re.compile(r"\\\[")),
    ("\\]", re.compile(r"\\\]")),
    ("\\begin{", re.compile(r"\\begin\{")),
    # $...$ holding a backslash, _ or ^ on one line: inline math that the parser left
    # alone.
    ("$…$", re.compile(r"\$[^$\s][^$\n]{0,80}?[\\_^][^$\n]{0,80}?\$")),
]


@dataclass
class PageReport:
    page: str
    url: str
    load_error: str | None = None
    final_url: str = ""  # relative to the server's root when on it
    seconds: float = 0.0
    console: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    @property
    def redirected(self) -> bool:
        return bool(self.final_url) and self.final_url.split("#")[0] != self.page

    @property
    def label(self) -> str:
        """The page, and where the browser ended up if the page redirected it."""
        return (
            f"{self.page} (redirected to {self.final_url})"
            if self.redirected
            else self.page
        )


def _snippet(text: str, start: int, end: int, width: int = 40) -> str:
    s = text[max(0, start - width) : end + width]
    return " ".join(s.split())


def _follow_meta_refresh(drv, url: str) -> None:
    """Sphinx's root index.html may be a <meta http-equiv="refresh"> redirect: test
    where it leads.
    """
    refresh = drv.execute_script(
        "const m = document.querySelector('meta[http-equiv=\"refresh\" i]');"
        " return m ? m.content : null;"
    )
    if not refresh:
        return
    deadline = time.monotonic() + PAGE_LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if (
                drv.current_url != url
                and drv.execute_script("return document.readyState") == "complete"
            ):
                return
        except Exception:  # the page is being replaced
            pass
        time.sleep(0.05)
    raise TimeoutError(
        f"the page asks for a redirect ({refresh!r}) that did not happen"
    )


def _load_page(drv, base_url: str, page: str) -> PageReport:
    url = urllib.parse.urljoin(base_url, urllib.parse.quote(page))
    report = PageReport(page=page, url=url)
    started = time.perf_counter()
    try:
        # A first visit: what the previous page stored (theme mode, ...) must not hide
        # an error.
        drv.execute_script(
            "try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}"
        )
        drv.get_log("browser")  # drop whatever the previous page logged late
        drv.get(url)
        _follow_meta_refresh(drv, url)
        final = drv.current_url
        report.final_url = (
            final[len(base_url) :] if final.startswith(base_url) else final
        )
        data = drv.execute_async_script(INSPECT_JS, MATHJAX_WAIT_MS, IMAGE_WAIT_MS)
        if data.get("scriptError"):
            report.load_error = f"inspection script failed: {data['scriptError']}"
        report.data = data
    except Exception as err:  # the page never finished loading, the driver died, ...
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        report.load_error = f"{type(err).__name__}: {first_line}"
    try:
        severe = [
            f"{entry.get('source', '?')}: {entry.get('message', '')}"
            for entry in drv.get_log("browser")
            if entry.get("level") == "SEVERE"
        ]
        report.console = list(dict.fromkeys(severe))  # once each, in order
    except Exception as err:
        report.console = [f"(could not read the console log: {err})"]
    report.seconds = time.perf_counter() - started
    return report


@pytest.fixture(scope="module")
def reports(
    html_dir: Path, server: str, driver
) -> dict[str, PageReport] | BrowserMissing:
    """Loads every page once; the tests below read from these reports."""
    if isinstance(driver, BrowserMissing):
        return driver  # each test then fails (CI) or skips, with the reason
    started = time.perf_counter()
    result = {page: _load_page(driver, server, page) for page in PAGES}
    times = ", ".join(f"{r.page} {r.seconds:.1f} s" for r in result.values())
    print(
        f"\nbrowser: {len(result)} pages in {time.perf_counter() - started:.1f} s "
        f"({times})"
    )
    return result


def _report(reports: dict[str, PageReport] | BrowserMissing, page: str) -> PageReport:
    if isinstance(reports, BrowserMissing):
        _missing_tool(str(reports))
    report = reports[page]
    if report.load_error:
        pytest.fail(
            f"{report.label}: the page did not load in the browser: "
            f"{report.load_error}",
            pytrace=False,
        )
    return report


def _fail(page: str, what: str, problems: list[str]) -> None:
    shown = problems[:20]
    more = (
        f"\n  … and {len(problems) - len(shown)} more"
        if len(problems) > len(shown)
        else ""
    )
    pytest.fail(f"{page}: {what}:\n  " + "\n  ".join(shown) + more, pytrace=False)


# --------------------------------------------------------------------------------------
# The tests.


def test_book_is_built() -> None:
    if not HTML_DIR.is_dir():
        pytest.fail(
            f"no built book: {HTML_DIR} does not exist: run `make book` first",
            pytrace=False,
        )
    pages = find_pages(HTML_DIR)
    assert "index.html" in pages, f"{HTML_DIR}: no index.html: run `make book` first"
    assert len(pages) >= 2, (
        f"{HTML_DIR}: only {pages} found, the book's pages are missing: run `make book`"
    )


def test_browser_is_available() -> None:
    """Fails under CI, skips elsewhere, when the browser test cannot run at all."""
    try:
        chromium, chromedriver = _find_browser()
    except BrowserMissing as missing:
        _missing_tool(str(missing))
        return
    for program in (chromium, chromedriver):
        assert os.access(program, os.X_OK), f"{program} is not an executable file"
    version = subprocess.run(
        [chromedriver, "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and "ChromeDriver" in version.stdout, (
        version.stdout,
        version.stderr,
    )


PAGE_PARAMS = PAGES or [
    pytest.param(
        "(no pages)",
        marks=pytest.mark.skip(reason="no built book; see test_book_is_built"),
    )
]


@pytest.mark.parametrize("page", PAGE_PARAMS)
def test_console_has_no_errors(reports, page: str) -> None:
    report = _report(reports, page)
    if report.console:
        _fail(
            report.label,
            f"{len(report.console)} error(s) in the browser console",
            report.console,
        )


@pytest.mark.parametrize("page", PAGE_PARAMS)
def test_math_is_rendered_by_mathjax(reports, page: str) -> None:
    report = _report(reports, page)
    data = report.data
    problems: list[str] = []
    if data["mathjaxProblem"]:
        problems.append(f"MathJax: {data['mathjaxProblem']}")
    elif data["formulas"] and data["mathjax"] is None:
        problems.append("MathJax is not loaded on this page")
    if data["formulas"] and data["mjxContainers"] == 0:
        problems.append(
            "no MathJax output (mjx-container) on the page, which has "
            f"{data['formulas']} formula(s)"
        )
    untypeset = data["untypeset"]
    if untypeset:
        examples = "; ".join(repr(tex) for tex in untypeset[:3])
        problems.append(
            f"{len(untypeset)} of {data['formulas']} formula(s) not typeset by "
            f"MathJax, e.g. {examples}"
        )
    for err in data["mathErrors"]:
        problems.append(f"MathJax error in a formula: {err!r}")
    text = data["text"]
    for name, pattern in RAW_MATH:
        matches = list(pattern.finditer(text))
        if matches:
            first = matches[0]
            times = f" ({len(matches)}×)" if len(matches) > 1 else ""
            problems.append(
                f"raw {name}{times} in the page text: "
                f"…{_snippet(text, first.start(), first.end())}…"
            )
    if problems:
        _fail(report.label, "math is not rendered by MathJax", problems)


@pytest.mark.parametrize("page", PAGE_PARAMS)
def test_images_have_loaded(reports, page: str) -> None:
    report = _report(reports, page)
    broken = [
        f"<img src={img['src']!r}> did not load "
        f"({'still loading' if not img['complete'] else 'naturalWidth 0'}; "
        f"{img['url']})"
        for img in report.data["images"]
        if not img["complete"] or not img["naturalWidth"]
    ]
    if broken:
        _fail(
            report.label,
            f"{len(broken)} of {len(report.data['images'])} image(s) did not load",
            broken,
        )


@pytest.mark.parametrize("page", PAGE_PARAMS)
def test_images_have_a_text_alternative(reports, page: str) -> None:
    """Every figure is described for screen readers: a non-empty alt on every <img>."""
    report = _report(reports, page)
    missing = [
        f"<img src={(img['src'] or '')[:60]!r}> has no alt text"
        for img in report.data["images"]
        if not (img.get("alt") or "").strip()
    ]
    if missing:
        _fail(
            report.label,
            f"{len(missing)} of {len(report.data['images'])} image(s) without alt text",
            missing,
        )


# Interactive figures: matplotlib's JavaScript player
# (rnn_course.plotting.animation_html).
PLAYER_PAGES = [
    page
    for page in PAGES
    if 'class="anim-slider"' in (HTML_DIR / page).read_text(errors="replace")
]

STEP_PLAYER_JS = r"""
const done = arguments[arguments.length - 1];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const players = Array.from(document.querySelectorAll("input.anim-slider"));
  const out = [];
  for (const slider of players) {
    const root = slider.closest(".animation");
    const img = root.querySelector("img");
    const first = img.src;
    root.querySelector('button[title="Next frame"]').click();
    await sleep(100);
    const afterNext = img.src;
    slider.value = slider.max;
    slider.dispatchEvent(new Event("input"));
    slider.dispatchEvent(new Event("change"));
    await sleep(100);
    out.push({frames: Number(slider.max) + 1, nextChanged: afterNext !== first,
              sliderChanged: img.src !== afterNext});
  }
  return out;
})().then(done, (e) => done({scriptError: String(e && e.stack || e)}));
"""


def test_the_book_has_an_interactive_figure() -> None:
    assert PLAYER_PAGES, (
        "no page holds an interactive figure (chapter 4's spectral-radius slider)"
    )


@pytest.mark.parametrize(
    "page",
    PLAYER_PAGES
    or [pytest.param("(none)", marks=pytest.mark.skip(reason="no player"))],
)
def test_interactive_figure_redraws_when_stepped_or_slid(
    reports, server: str, driver, page: str
) -> None:
    """With the network off: the "next frame" button and the slider each change the
    figure shown.
    """
    report = _report(reports, page)
    driver.get(report.url)
    players = driver.execute_async_script(STEP_PLAYER_JS)
    assert not isinstance(players, dict), players
    assert players, f"{page}: the page's player did not appear in the browser"
    for player in players:
        assert player["frames"] > 1, (
            f"{page}: a player with {player['frames']} frame(s)"
        )
        assert player["nextChanged"], f"{page}: 'Next frame' did not change the figure"
        assert player["sliderChanged"], (
            f"{page}: moving the slider did not change the figure"
        )


def _anchor_ids(
    html_dir: Path, target: str, reports: dict[str, PageReport]
) -> set[str]:
    ids = set(_parse_static(html_dir / target).ids)
    loaded = reports.get(target)
    if loaded is not None and not loaded.redirected and loaded.data.get("ids"):
        ids.update(loaded.data["ids"])  # anchors that the page's scripts add count too
    return ids


@pytest.mark.parametrize("page", PAGE_PARAMS)
def test_internal_links_resolve(
    reports, html_dir: Path, server: str, page: str
) -> None:
    report = _report(reports, page)
    origin = urllib.parse.urlsplit(server)
    problems: list[str] = []
    seen: set[str] = set()
    for href in report.data["links"]:
        if href in seen:
            continue
        seen.add(href)
        parts = urllib.parse.urlsplit(href)
        if parts.scheme not in ("http", "https") or parts.netloc != origin.netloc:
            continue  # external (or mailto:, javascript:): not this test's business
        path = urllib.parse.unquote(parts.path).lstrip("/")
        if path == "" or path.endswith("/"):
            path += "index.html"
        shown = f"{path}#{parts.fragment}" if parts.fragment else path
        file = (html_dir / path).resolve()
        if not file.is_relative_to(html_dir) or not file.is_file():
            problems.append(f"link to {shown}: no such file in the built book")
            continue
        fragment = urllib.parse.unquote(parts.fragment)
        if fragment and fragment != "top" and file.suffix == ".html":
            if fragment not in _anchor_ids(html_dir, path, reports):
                problems.append(
                    f"link to {shown}: {path} has no element with id {fragment!r}"
                )
    if problems:
        _fail(report.label, f"{len(problems)} broken internal link(s)", problems)


EXERCISE_NUMBER = re.compile(
    r'<span class="caption-number">Exercise (\d+)\.(\d+) </span>'
)


def test_exercises_are_numbered_per_chapter() -> None:
    """On every page, exercises read N.1, N.2, ... with one chapter number N per page,
    and no two pages share a chapter number (the numbers restart in each chapter)."""
    chapters: dict[str, str] = {}
    numbered = 0
    for page in PAGES:
        found = EXERCISE_NUMBER.findall((HTML_DIR / page).read_text(errors="replace"))
        if not found:
            continue
        numbered += 1
        assert len({chapter for chapter, _ in found}) == 1, f"{page}: {found}"
        assert [int(k) for _, k in found] == list(range(1, len(found) + 1)), (
            f"{page}: {found}"
        )
        chapter = found[0][0]
        assert chapter not in chapters, (
            f"{page} and {chapters.get(chapter)}: chapter {chapter}"
        )
        chapters[chapter] = page
    assert numbered, "no page has a numbered exercise: is sphinx-exercise numbering on?"
