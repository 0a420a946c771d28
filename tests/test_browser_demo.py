"""Notebook 10's demo in a real browser: JupyterLab + headless Chromium, driven by Playwright.

The test copies ``notebooks/10_demo.ipynb`` (outputs and saved widget state removed, so a
picture can only come from this run) into a temporary folder, starts JupyterLab on 127.0.0.1
on a free port with a temporary config, runtime and data folder and a random token, opens the
notebook in Debian's ``chromium`` (Playwright's own browser builds are never downloaded), runs
all cells (smoke mode), then types captions into the SSA-GAN tab: one the model cannot read
(an error message must appear and the picture must hide) and one with an unknown word (a
warning must name it, the picture must come back and the kernel's picture counter shown in the
message must move on: the smoke model's text path is too weak to change the pixels), then
moves the "Samples" slider one step with the keyboard (a new, wider picture must load).
Screenshots go to ``build/test-artifacts/``. The server is shut down whatever happens.

Without ``chromium`` (or Playwright) the test is skipped, except under CI (``CI=true``),
where it fails: ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO

NOTEBOOK = REPO / "notebooks" / "10_demo.ipynb"
ARTIFACTS = REPO / "build" / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
SERVER_START_S = 90  # JupyterLab answering /api/status
RUN_ALL_S = 300  # every cell of the notebook, smoke mode (a tiny model may be trained first)
UI_S = 60  # one interaction: a caption typed -> a message / a new picture


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """``$T2I_CHROMIUM``, else Debian's ``chromium`` (or ``chromium-browser``) on the PATH."""
    explicit = os.environ.get("T2I_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_copy(src: Path, dst: Path) -> int:
    """Copy a notebook without outputs, execution counts or widget state; returns the number
    of non-empty code cells."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    nb.metadata.pop("widgets", None)
    n_code = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            n_code += bool(cell.source.strip())
    nbformat.write(nb, dst)
    return n_code


class LabServer:
    """A JupyterLab process in its own session, with everything it writes under ``home``."""

    def __init__(self, home: Path, root_dir: Path):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        config = home / "config"
        (config / "labconfig").mkdir(parents=True)
        # no "news?" toast over the notebook, no update check (nothing outside can be reached)
        (config / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data"),
               "IPYTHONDIR": str(home / "ipython"), "T2I_SMOKE": "1", "T2I_PROGRESS": "0",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        self.log_path = home / "jupyterlab.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", "--ServerApp.terminals_enabled=False",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root_dir}",
             f"--LabApp.user_settings_dir={home / 'settings'}",
             f"--LabApp.workspaces_dir={home / 'workspaces'}",
             "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=root_dir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}",
                                            timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ask the server to shut down (it stops its kernels), then make sure it is gone."""
        if self.proc.poll() is None:
            request = urllib.request.Request(f"{self.url}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {self.token}"})
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except (urllib.error.URLError, OSError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the server's own process group
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def chromium() -> str:
    """The browser's executable; skips (fails under CI) when it or Playwright is missing."""
    executable = chromium_path()
    if executable is None:
        skip_or_fail("Debian's chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    return executable


@pytest.fixture
def lab(chromium: str, tmp_path: Path) -> Iterator[tuple[LabServer, int]]:
    root = tmp_path / "notebooks"
    root.mkdir()
    n_code = clean_copy(NOTEBOOK, root / NOTEBOOK.name)
    server = LabServer(tmp_path / "jupyter", root)
    try:
        server.wait_ready(SERVER_START_S)
        yield server, n_code
    finally:
        server.stop()


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(
        ".jp-Notebook .jp-CodeCell .jp-InputArea-prompt",
        "els => els.map(e => e.textContent.trim())")


def _wait_for_kernel(page) -> None:
    """Until the notebook's kernel has started and is idle ("Run All" before that is lost)."""
    page.wait_for_function(
        """() => {
            const name = document.querySelector('.jp-NotebookPanel .jp-Toolbar-kernelName');
            const bar = document.querySelector('.jp-StatusBar-Widget');
            return name && !/No Kernel/.test(name.textContent)
                && bar && /\\|\\s*Idle/.test(bar.textContent);
        }""", polling=500, timeout=SERVER_START_S * 1000)


def _run_all(page, n_code: int, server: LabServer) -> None:
    """Run -> Run All Cells, then wait until the last code cell shows ``[n_code]``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + RUN_ALL_S
    done = f"[{n_code}]:"
    while time.monotonic() < deadline:
        prompts = _prompts(page)
        if prompts and prompts[-1] == done:
            return
        errors = page.locator(".jp-OutputArea-output[data-mime-type="
                              "'application/vnd.jupyter.stderr']")
        tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
        if tracebacks and "[*]:" not in prompts:
            pytest.fail("a cell failed in the browser:\n" + tracebacks[0][-3000:])
        time.sleep(1)
    pytest.fail(f"Run All did not finish in {RUN_ALL_S} s; prompts {_prompts(page)}\n"
                f"{server.log_tail()}")


def _picture_state(picture) -> dict:
    return picture.evaluate("img => ({src: img.src, width: img.naturalWidth, "
                            "complete: img.complete})")


def test_demo_runs_and_redraws_in_a_real_browser(chromium: str, lab: tuple[LabServer, int]):
    from playwright.sync_api import expect, sync_playwright

    server, n_code = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("browser_demo*.png"):
        old.unlink()
    profile = Path(server.log_path).parent / "chromium-profile"

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1500})
        page = browser.new_page()
        page.set_default_timeout(UI_S * 1000)
        try:
            page.goto(f"{server.url}/lab/tree/{NOTEBOOK.name}?token={server.token}",
                      wait_until="domcontentloaded")
            page.locator(".jp-NotebookPanel").first.wait_for(state="visible")
            _wait_for_kernel(page)
            _run_all(page, n_code, server)

            app = page.locator(".t2i-demo").first
            app.scroll_into_view_if_needed()
            picture = app.locator("img.t2i-images").first  # the Image widget is the <img>
            caption = app.locator(".t2i-caption input").first
            message = app.locator(".t2i-message").first
            stamp = message.locator(".t2i-stamp")
            expect(picture).to_be_visible()
            first = _picture_state(picture)
            assert first["src"] and first["width"] > 100, f"no picture after Run All: {first}"
            first_stamp = stamp.text_content()  # "(picture N)": the kernel's render count

            caption.fill("qwerty zxcvb")  # no known word: an error in the UI, the picture hides
            caption.press("Enter")
            expect(message.locator(".t2i-error")).to_contain_text("Cannot use this caption")
            expect(picture).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "browser_demo_error.png"))

            caption.fill("a yellow bird with black wings and a sparkly hat")
            caption.press("Enter")
            expect(message.locator(".t2i-warning")).to_contain_text("sparkly")
            expect(picture).to_be_visible()
            expect(stamp).to_have_text(re.compile(r"\(picture \d+\)"))
            assert stamp.text_content() != first_stamp, "typing a caption drew no new picture"

            # one more sample: a new, wider picture must arrive and load in the page
            # (a redraw for the caption may still be arriving: wait for the wider one itself)
            handle = app.locator(".t2i-samples .noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            try:
                page.wait_for_function(
                    "([img, w]) => img.complete && img.naturalWidth > w",
                    arg=[picture.element_handle(), first["width"]])
            except Exception as err:
                raise AssertionError(f"no wider picture after one more sample: {first} -> "
                                     f"{_picture_state(picture)}") from err
            wider = _picture_state(picture)
            assert wider["src"] != first["src"] and wider["width"] > first["width"]
            app.evaluate("el => el.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(ARTIFACTS / "browser_demo.png"))
            app.screenshot(path=str(ARTIFACTS / "browser_demo_widget.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_demo_failure.png"))
            raise
        finally:
            browser.close()
    assert (ARTIFACTS / "browser_demo.png").stat().st_size > 10_000
