"""The page at ``GET /`` in a real headless browser (Debian's chromium, driven by Selenium
through Debian's chromium-driver) against the real server on a loopback port: it loads
with no console error, encodes real images on the server, decodes them with the
JavaScript decoder to the Python client's pixels (at most 1 apart), and compares them with
the browser's WebP and JPEG. Also measured and printed: decode times in Chromium and the
bytes a first and a later visit download.

`make test` installs chromium and chromium-driver (`make system-packages`) and Selenium
(the dev extra, pinned in constraints.txt).
"""

from __future__ import annotations

import base64
import os
import shutil
import statistics
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentwire.client import decode_array
from latentwire.training.data import load_idx_dataset
from tests.server.conftest import running_server

KEY = "page-test-key-0123456789"


def _binary(*names: str) -> str:
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if found is None:
        pytest.fail(
            f"{names[0]} is not installed: `make test` installs Debian's chromium and "
            "chromium-driver (apt-get install chromium chromium-driver)"
        )
    return found


@pytest.fixture(scope="module")
def browser_factory():
    """Makes fresh headless Chromiums (each a new profile: empty caches), quits them all."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    made = []

    def make():
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        options.add_argument("--window-size=1400,1150")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        browser = webdriver.Chrome(options=options, service=Service(driver))
        browser.set_script_timeout(120)
        made.append(browser)
        return browser

    yield make
    for browser in made:
        browser.quit()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server({"LATENTWIRE_TASKS": "codec"}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def images(data_dir, tmp_path_factory) -> dict[str, Path]:
    """A Fashion-MNIST test image (28x28), a Kodak crop and a whole Kodak photo (768x512)."""
    folder = tmp_path_factory.mktemp("page_images")
    test_set = load_idx_dataset("fashion-mnist", train=False, data_dir=data_dir)
    Image.fromarray(test_set.images[7, 0].numpy()).save(folder / "fashion.png")
    with Image.open(data_dir / "kodak" / "kodim23.png") as photo:
        photo.convert("RGB").crop((200, 100, 456, 356)).save(folder / "kodak-crop.png")
        photo.convert("RGB").save(folder / "kodak.png")
    return {p.stem: p for p in folder.iterdir()}


def wait_for_state(browser, states: tuple[str, ...], timeout: float = 180) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def state(b):
        found = b.execute_script("return document.body.dataset.state")
        return found if found in states else None

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(state)


def console_errors(browser) -> list[dict]:
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def upload(browser, image: Path) -> dict:
    """Choose ``image`` in the page; what the page made of it, with the IR and canvas."""
    browser.find_element("id", "file").send_keys(str(image))
    state = wait_for_state(browser, ("done", "error"))
    assert state == "done", browser.execute_script("return window.latentwirePage.error")
    last = browser.execute_script(
        """const l = window.latentwirePage.last;
        const c = document.getElementById('decoded');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const b64 = (u) => { let s = ''; for (const x of u) s += String.fromCharCode(x);
                             return btoa(s); };
        return {...l, ir: b64(l.ir), rgba: b64(d), canvas: [c.width, c.height],
                heat: [document.getElementById('heatmap').width,
                       document.getElementById('heatmap').height],
                rows: document.querySelectorAll('#figures tbody tr').length};"""
    )
    last["ir"] = base64.b64decode(last["ir"])
    rgba = np.frombuffer(base64.b64decode(last["rgba"]), np.uint8)
    last["rgba"] = rgba.reshape(last["canvas"][1], last["canvas"][0], 4)
    return last


def assert_matches_python(last: dict) -> None:
    expected = decode_array(last["ir"])  # the Python client, same IR
    if expected.ndim == 2:
        expected = np.repeat(expected[..., None], 3, axis=2)
    got = last["rgba"]
    assert got.shape[:2] == expected.shape[:2]
    assert np.all(got[..., 3] == 255)
    assert np.abs(got[..., :3].astype(int) - expected).max() <= 1


def decode_ms(browser, ir: bytes, repeat: int) -> list[float]:
    """Times of ``decode(ir)`` in the page (its store: the decoder package already in it)."""
    return browser.execute_async_script(
        """const [b64, repeat, done] = arguments;
        const ir = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const page = window.latentwirePage;
        (async () => {
          const times = [];
          for (let i = 0; i < repeat; i++) {
            const began = performance.now();
            await page.decode(ir);
            times.push(performance.now() - began);
          }
          done(times);
        })().catch((e) => done(String(e)));""",
        base64.b64encode(ir).decode(),
        repeat,
    )


def downloaded(browser) -> dict[str, int]:
    """Bytes over the wire by kind, from the Resource Timing entries of this page load
    (the API calls /encode and /models excluded: they are the work, not the page)."""
    entries = browser.execute_script(
        """return [performance.getEntriesByType('navigation')[0],
                   ...performance.getEntriesByType('resource')]
                  .map((e) => [e.name, e.transferSize]);"""
    )
    sizes: dict[str, int] = {}
    for name, size in entries:
        path = name.split("?")[0]
        if path.endswith(("/encode", "/models")):
            continue
        kind = (
            "wasm"
            if path.endswith(".wasm")
            else "decoder package"
            if path.endswith("/decoder")
            else "page and JS"
        )
        sizes[kind] = sizes.get(kind, 0) + size
    return sizes


def test_the_page_decodes_real_images_to_the_python_clients_pixels(
    browser_factory, server, images, tmp_path
):
    browser = browser_factory()
    browser.get(f"{server}/")
    assert wait_for_state(browser, ("idle", "error", "key")) == "idle"
    assert console_errors(browser) == []

    fashion = upload(browser, images["fashion"])
    assert fashion["model"].startswith("fashion-mnist") and fashion["canvas"] == [28, 28]
    assert_matches_python(fashion)
    assert fashion["heat"] == [7, 7] and fashion["rows"] == 5  # bit map, IR + 2 per format
    assert 0 < fashion["psnr"] < 99 and fashion["irBytes"] == len(fashion["ir"])

    photo = upload(browser, images["kodak-crop"])
    assert photo["model"].startswith("photo") and photo["canvas"] == [256, 256]
    assert_matches_python(photo)
    for name in ("webp", "jpeg"):
        compared = photo["comparisons"][name]
        assert compared["sameBytes"]["bytes"] <= photo["irBytes"]
        assert compared["samePsnr"]["psnr"] >= photo["psnr"] or not compared["samePsnr"]["reached"]

    browser.save_screenshot(str(tmp_path / "page.png"))
    if os.environ.get("LATENTWIRE_PAGE_SCREENSHOT"):  # how docs/page.png is made
        browser.save_screenshot(os.environ["LATENTWIRE_PAGE_SCREENSHOT"])
    assert console_errors(browser) == []


def test_decode_times_and_bytes_downloaded(browser_factory, server, images):
    """The README's figures, printed (speed is a benchmark's, not a test's); what is tested:
    a later visit downloads nothing but revalidations, the decoder package comes from the
    Cache API."""
    browser = browser_factory()  # a new profile: nothing cached yet
    browser.get(f"{server}/")
    wait_for_state(browser, ("idle",))
    small = upload(browser, images["fashion"])
    first = downloaded(browser)
    small_ms = decode_ms(browser, small["ir"], 30)
    photo = upload(browser, images["kodak"])
    assert photo["canvas"] == [768, 512]
    photo_ms = decode_ms(browser, photo["ir"], 3)
    assert isinstance(small_ms, list) and isinstance(photo_ms, list), (small_ms, photo_ms)

    browser.refresh()  # a later visit: the files revalidate (304), the package is in the cache
    wait_for_state(browser, ("idle",))
    again = upload(browser, images["fashion"])
    later = downloaded(browser)
    assert again["ir"] == small["ir"]
    assert console_errors(browser) == []

    small_median, photo_median = statistics.median(small_ms), statistics.median(photo_ms)
    print(
        f"\nChromium decode: 28x28 IR median {small_median:.1f} ms (first, with the package "
        f"fetch and onnxruntime start: {small['decodeMs']:.0f} ms); 768x512 Kodak IR "
        f"({photo['irBytes']} bytes) median {photo_median:.0f} ms"
        f"\nfirst visit downloads {first} ({sum(first.values()) / 1e6:.2f} MB); "
        f"a later one {later} ({sum(later.values()) / 1e3:.1f} kB)"
    )
    assert first["wasm"] > 1e6 and first["decoder package"] > 1e4
    assert sum(later.values()) < 20_000 and later.get("decoder package", 0) == 0


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_in_memory(browser_factory, images):
    with running_server({"LATENTWIRE_TASKS": "codec", "LATENTWIRE_API_KEYS": KEY}) as (url, _):
        browser = browser_factory()
        browser.get(f"{url}/")  # the page and its files need no key
        assert wait_for_state(browser, ("idle", "key", "error")) == "key"
        assert console_errors(browser) == []  # nothing was sent without a key
        browser.find_element("id", "key").send_keys(KEY + "\n")
        assert wait_for_state(browser, ("idle", "error")) == "idle"
        last = upload(browser, images["fashion"])
        assert_matches_python(last)
        stored = browser.execute_script(
            "return JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
            " + document.cookie"
        )
        assert KEY not in stored
        # The test hook gives other scripts nothing that holds the key.
        hook = browser.execute_script(
            "const p = window.latentwirePage; return [Object.keys(p).sort(), String(p.decode)]"
        )
        assert hook[0] == ["decode", "error", "last"] and KEY not in hook[1]
        assert console_errors(browser) == []
