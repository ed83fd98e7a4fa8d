"""The web page at / and the API docs at /docs, driven in headless Debian chromium through Playwright.

Needs /usr/bin/chromium (`apt-get install -y chromium`): skipped with that hint locally, a failure under CI.
Screenshots go to artifacts/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from serve_app.registry import Registry, Withheld, parse_registry
from tests.audio_factory import c_major_cadence, click_track, encode
from tests.conftest import REPO, free_port, make_settings, registry_data, running_local_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"
PAGE_MODELS = ("key", "bpm_degara", "loudness-ebur128", "onsets", "fail")
WITHHELD_REASON = "weights not installed: run `mirstream models fetch slow`"

pytestmark = pytest.mark.browser


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's browser with `apt-get update && apt-get install -y chromium`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def web_server() -> Iterator[str]:
    """The page's four visual models (and the failing fixture) on an in-process server; all of them are defaults."""
    data = registry_data()
    catalogue = yaml.safe_load((REPO / "model_registry.yaml").read_text())["models"]
    data["models"] = [m for m in data["models"] + catalogue if m["name"] in (*PAGE_MODELS, "slow")]
    data["models"] = list({(m["name"], m["version"]): m for m in data["models"]}.values())
    full = parse_registry(data, "web test registry")
    registry = Registry(  # `slow` is listed but withheld, as a model without its weights is
        entries=tuple(e for e in full.entries if e.name != "slow"),
        ingress=full.ingress,
        withheld=tuple(Withheld(e, WITHHELD_REASON) for e in full.entries if e.name == "slow"),
    )
    with running_local_server(registry, make_settings(free_port())) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless chromium for the module."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 s of a C major I-IV-V-I cadence over a 120 BPM click, getting louder: known key, tempo and a rising curve."""
    sr = 44100
    music = c_major_cadence(seconds_per_chord=2.0, repeats=3, sample_rate=sr)
    clicks = click_track(120.0, len(music) / sr, sr)[: len(music)]
    rising = np.linspace(0.35, 1.0, len(music), dtype=np.float32)
    path = tmp_path_factory.mktemp("web") / "cadence with clicks.mp3"
    path.write_bytes(encode((0.8 * music + 0.6 * clicks) * rising, sr, "mp3"))
    return path


def _page(browser: object, scheme: str = "light") -> tuple[object, list[str]]:
    """A fresh page that records console errors and uncaught exceptions."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    return page, problems


def _ink_pixels(page: object, selector: str) -> int:
    """Pixels of a canvas that something was drawn on (alpha > 0)."""
    return page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel);
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }""",
        selector,
    )


def test_upload_draws_every_result(web_server: str, browser: object, song: Path) -> None:
    """Upload a real mp3 with the default models: waveform with beats and onsets, key on the circle of fifths,
    loudness curve with integrated and LRA, the failing model's card shows its error; no console errors."""
    page, problems = _page(browser)
    page.goto(web_server + "/")
    page.wait_for_selector("#models input[value='key:1']")
    checked = page.eval_on_selector_all("#models input:checked", "els => els.map(e => e.value)")
    assert sorted(checked) == sorted(f"{m}:1" for m in PAGE_MODELS)  # defaults pre-ticked
    withheld = page.locator(".model.unavailable:has(input[value='slow:1'])")
    assert withheld.locator("input").is_disabled() and WITHHELD_REASON in withheld.inner_text()
    page.set_input_files("#file", str(song))
    assert "cadence with clicks.mp3" in page.inner_text("#file-name")
    page.click("#analyze")
    page.wait_for_selector("#status.ok, #status.warn, #status.error", timeout=120_000)
    assert page.inner_text("#status").startswith("Done: 4 of 5 models"), page.inner_text("#status")

    for model in ("key:1", "bpm_degara:1", "loudness-ebur128:1", "onsets:1"):
        assert page.locator(f".card.done[data-model='{model}']").count() == 1, model
    failed = page.locator(".card.error[data-model='fail:1']")
    assert "fixture model failed on purpose" in failed.inner_text()

    page.wait_for_selector("#wave[aria-label^='Waveform']", timeout=30_000)  # decoded in the page by WebAudio
    wave = page.locator("#wave").bounding_box()
    assert _ink_pixels(page, "#wave") > 0.2 * wave["width"] * wave["height"]  # a real waveform, not a line
    beats = page.locator("#markers line.beat").count()
    onsets = page.locator("#markers line.onset").count()
    assert 44 <= beats <= 50 and onsets > 10  # 120 BPM for 24 s
    assert f"{beats} beats" in page.get_attribute("#wave", "aria-label")

    active = page.locator(".card[data-model='key:1'] svg.fifths .seg.active")
    assert active.count() == 1 and active.get_attribute("data-key") == "C major"
    assert page.locator("#summary .chip.key").inner_text() == "C major"
    assert "120" in page.locator("#summary .chip.bpm").inner_text()

    loud = page.locator(".card[data-model='loudness-ebur128:1']")
    assert "LUFS" in loud.locator(".stats").inner_text()
    short_term = loud.locator("svg.loudness path.line.short-term").get_attribute("d")
    assert short_term.count("L") > 100  # ~230 points of the 0.1 s hop curve
    assert loud.locator("svg.loudness line.hline.integrated").count() == 1
    assert "LRA" in loud.locator("svg.loudness text.band-label").text_content()
    assert page.locator(".card[data-model='onsets:1'] svg.density rect").count() > 10

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-light.png"), full_page=True)
    assert problems == []
    page.close()


def test_url_input_dark_scheme_and_http_errors(web_server: str, browser: object, cdn: str) -> None:
    """A pasted URL goes as the audio-url header; without decoded audio the beats sit on a timeline.
    A request-level error (an unknown model) is shown in the status line."""
    page, problems = _page(browser, "dark")
    page.goto(web_server + "/")
    page.wait_for_selector("#models input[value='key:1']")
    page.click("[data-pick=none]")
    page.check("#models input[value='bpm_degara:1']")
    page.check("#models input[value='onsets:1']")
    assert page.inner_text("#model-count") == "2 selected"
    page.fill("#url", f"{cdn}/click.mp3")
    page.click("#analyze")
    page.wait_for_selector("#status.ok, #status.warn, #status.error", timeout=120_000)
    assert page.inner_text("#status").startswith("Done: 2 of 2 models")
    assert page.locator("#markers line.beat").count() > 30
    assert "Waveform is drawn for uploaded files" in page.inner_text("#wave-note")
    page.screenshot(path=str(ARTIFACTS / "web-dark-url.png"), full_page=True)

    page.fill("#model-filter", "bpm")
    assert page.locator(".model:visible").count() == 1
    page.evaluate("document.querySelector('#models input[value=\"bpm_degara:1\"]').value = 'nope:1'")
    page.click("#analyze")
    page.wait_for_selector("#status.error")
    assert "HTTP 404" in page.inner_text("#status") and "unknown model 'nope'" in page.inner_text("#status")
    assert [p for p in problems if "404" not in p] == []  # the browser itself logs the failed request
    page.close()


def test_docs_page_renders_the_openapi_document(web_server: str, browser: object) -> None:
    """/docs draws the endpoints, the event schemas and one section per model result, from /openapi.json."""
    page, problems = _page(browser)
    page.goto(web_server + "/docs")
    page.wait_for_selector("#doc[aria-busy=false]")
    assert page.locator("section.op").count() >= 7
    stream = page.locator("#op-analysisStream")
    assert "/v1/analysis/stream" in stream.inner_text() and "audio-url" in stream.inner_text()
    for status in ("200", "400", "401", "413", "429", "503"):
        assert stream.locator(f".status-code:text-is('{status}')").count() == 1
    for model in PAGE_MODELS:
        section = page.locator(f"#schema-result_{model}_1")
        assert section.count() == 1, model
    assert "integrated_loudness" in page.locator("#schema-result_loudness-ebur128_1").inner_text()
    page.click("#toc-list a[href='#schema-CompletedEvent']")
    assert "result" in page.locator("#schema-CompletedEvent").inner_text()
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
    assert problems == []
    page.close()


def test_no_external_resources() -> None:
    """The page, the docs and their scripts load nothing from another host (they work offline; the CSP agrees)."""
    web = REPO / "serve_app" / "web"
    external = re.compile(
        r"""(?:src|href)\s*=\s*["'](?:https?:)?//"""  # <script src>, <link href>
        r"""|\bfrom\s+["'](?:https?:)?//|import\(\s*["']https?:"""  # ES module imports
        r"""|url\(\s*["']?(?:https?:)?//"""  # CSS
    )
    files = [p for p in web.rglob("*") if p.suffix in (".html", ".js", ".css")]
    assert len(files) >= 9
    for path in files:
        assert not external.search(path.read_text()), path


# Results in the shapes agreed for the ML models (notes/RESULT-FORMATS.md): these models need downloaded
# weights, so the page's renderers for them are checked here with results of exactly those shapes.
AGREED_SHAPES = {
    "tags_msd_musicnn:1": {
        "top": [{"label": "rock", "score": 0.82}, {"label": "guitar", "score": 0.61}, {"label": "indie", "score": 0.2}],
        "labels": ["rock", "guitar", "indie"],
        "activations": [0.82, 0.61, 0.2],
    },
    "arousal_valence:1": {"values": {"arousal": 6.1, "valence": 4.2}, "range": [1, 9]},
    "transcription_basic_pitch:1": {
        "notes": [
            {"start": 0.1 * i, "end": 0.1 * i + 0.4, "pitch": 60 + (i * 5) % 14, "velocity": 40 + 6 * i, "name": "C4"}
            for i in range(14)
        ],
        "note_count": 14,
    },
    "pitch_crepe:1": {
        "median_f0_hz": 220.0,
        "median_midi": 57.0,
        "voiced_ratio": 0.8,
        "times": [0.01 * i for i in range(300)],
        "f0_hz": [None if 100 <= i < 130 else 220.0 * 2 ** (i / 1200) for i in range(300)],
        "confidence": [0.9] * 300,
        "hop_s": 0.01,
    },
    "key_madmom:1": {
        "key": "F#",
        "scale": "minor",
        "strength": 0.7,
        "probabilities": {"F# minor": 0.7, "A major": 0.2, "C# minor": 0.1},
    },
    "downbeats_madmom:1": {
        "bpm": 100.0,
        "beats": [0.6 * i for i in range(1, 9)],
        "positions": [1, 2, 3, 4] * 2,
        "downbeats": [0.6, 3.0],
        "beats_per_bar": 4,
    },
    "chords_madmom:1": {
        "segments": [
            {"chord": "C", "start": 0.0, "end": 1.0, "label": "C:maj"},
            {"chord": "Am", "start": 1.0, "end": 2.0, "label": "A:min"},
            {"chord": "N", "start": 2.0, "end": 2.5, "label": "N"},
            {"chord": "Bb", "start": 2.5, "end": 4.8, "label": "Bb:maj"},
        ]
    },
    "embeddings_msd_musicnn:1": {
        "embedding": [0.1] * 200,
        "dimensions": 200,
        "frames": [[0.1] * 200],
        "frame_hop_s": 1.5,
    },
}


def test_renderers_for_the_agreed_ml_result_shapes(web_server: str, browser: object) -> None:
    """Tag bars, value bars, piano roll, pitch curve, probability-shaded circle, downbeats, chords and the
    generic JSON view, fed results of the agreed shapes through the page's own card code."""
    page, problems = _page(browser)
    page.goto(web_server + "/")
    page.wait_for_selector("#models input[value='key:1']")
    page.evaluate(
        """async (shapes) => {
            const { Card } = await import("/static/js/cards.js");
            const { Overview } = await import("/static/js/waveform.js");
            document.getElementById("results").hidden = false;
            const ov = new Overview({
                canvas: document.getElementById("wave"), markers: document.getElementById("markers"),
                playhead: document.getElementById("playhead"), player: document.getElementById("player"),
                note: document.getElementById("wave-note"), legend: document.getElementById("legend"),
                chordLaneEl: document.getElementById("chord-lane"),
            });
            const summary = () => {};
            const cards = document.getElementById("cards");
            for (const [model, results] of Object.entries(shapes)) {
                const card = new Card(model, { description: "" });
                cards.append(card.root);
                card.completed(results, 1.25, ov, summary);
            }
        }""",
        AGREED_SHAPES,
    )
    card = lambda model: page.locator(f".card[data-model='{model}']")  # noqa: E731
    assert card("tags_msd_musicnn:1").locator("ol.bars li").count() == 3
    assert "82.0 %" in card("tags_msd_musicnn:1").inner_text()
    assert card("arousal_valence:1").locator("ul.values li").count() == 2
    assert card("transcription_basic_pitch:1").locator("svg.piano-roll .notes rect").count() == 14
    assert card("pitch_crepe:1").locator("svg.pitch-chart path.line.pitch").get_attribute("d").count("M") == 2  # gap
    active = card("key_madmom:1").locator("svg.fifths .seg.active")
    assert active.get_attribute("data-key") == "F♯m"
    assert card("key_madmom:1").locator("svg.fifths .seg:not(.active) path[style]").count() == 2  # shaded by p
    assert page.locator("#markers line.downbeat").count() == 2
    assert card("chords_madmom:1").locator(".chords .chord").count() == 4
    assert page.locator("#chord-lane .chord").count() == 4
    assert card("embeddings_msd_musicnn:1").locator("details.json[open]").count() == 1  # no picture: JSON, open
    page.locator("#cards").screenshot(path=str(ARTIFACTS / "web-result-shapes.png"))
    assert problems == []
    page.close()


def test_the_pages_event_parser_agrees_with_the_contract_schemas(web_server: str, browser: object, song: Path) -> None:
    """The page's SSE parser (static/js/sse.js) turns a real stream into events that each validate against the
    contract's JSON Schemas (serve_app/contract/events.py): the same definition the server and client use."""
    import base64

    import jsonschema

    from serve_app.contract.events import event_schemas

    page, problems = _page(browser)
    page.goto(web_server)
    events = page.evaluate(
        """async ({body, models}) => {
            const { analysisEvents } = await import("/static/js/sse.js");
            const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
            const response = await fetch(`/v1/analysis/stream?models=${models}`, { method: "POST", body: bytes });
            const out = [];
            for await (const event of analysisEvents(response)) out.push(event);
            return out;
        }""",
        {"body": base64.b64encode(song.read_bytes()).decode(), "models": "key,fail"},
    )
    statuses = [e["status"] for e in events]
    assert statuses[0] == "started" and sorted(statuses[1:3]) == ["completed", "error"] and statuses[3] == "finished"
    schemas = event_schemas("#/$defs/")
    validator = jsonschema.Draft202012Validator({"$defs": schemas, **schemas["AnalysisEvent"]})
    for event in events:
        validator.validate(event)
    assert list(validator.iter_errors({"status": "finished"}))  # the schemas do reject a malformed event
    assert problems == []
