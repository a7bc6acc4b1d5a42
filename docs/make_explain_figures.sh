#!/usr/bin/env bash
# Regenerate the pictures and numbers of docs/interpretability.md with `s3ta explain`.
#   docs/make_explain_figures.sh                 untrained s3ta-small on catch (development)
#   docs/make_explain_figures.sh runs/demo       the demo's trained agent (its env, seed 0)
# Also records an untrained full-size s3ta on Breakout (Atari RAM ground truth).
# Writes docs/img/explain/*.png and the JSON results under $WORK (default runs/explain-docs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-runs/explain-docs}
IMG=docs/img/explain
explain() { "$PY" -m s3ta explain "$@"; }
mkdir -p "$IMG" "$WORK"

if [ $# -ge 1 ]; then source_args=("$1"); else source_args=(--agent s3ta-small --env catch); fi
rm -rf "$WORK/task"
explain record "${source_args[@]}" --episodes 10 --seed 0 --out "$WORK/task"
explain whatwhere "$WORK/task"
explain saliency "$WORK/task" --num-steps 3 --stride 2
explain intervene "$WORK/task"
explain inject "$WORK/task" --sprite square --at 4 4 --velocity 0 0 --onset 3
explain grounding "$WORK/task"
explain video "$WORK/task" --out "$WORK/task/video.mp4"
explain view "$WORK/task"
for name in whatwhere saliency intervene inject grounding; do
  cp "$WORK/task/analysis/$name.png" "$IMG/task-$name.png"
done

rm -rf "$WORK/breakout"
explain record --agent s3ta --env breakout --seed 0 --max-steps 150 --out "$WORK/breakout"
explain grounding "$WORK/breakout"
explain video "$WORK/breakout" --out "$WORK/breakout/video.mp4"
explain view "$WORK/breakout"
cp "$WORK/breakout/analysis/grounding.png" "$IMG/breakout-grounding.png"

"$PY" - "$WORK" "$IMG" <<'PYEOF'
import sys
from pathlib import Path

from PIL import Image

from s3ta.analysis.recording import load_recording
from s3ta.viz import save_attention_figure
from s3ta.viz.video import FrameComposer

work, img = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("task", "breakout"):
    recording = load_recording(work / name)
    save_attention_figure(recording, img / f"{name}-attention.png", num_frames=3)
    step = min(20, recording.num_steps - 1)
    Image.fromarray(FrameComposer(recording)(step)).save(img / f"{name}-video-frame.png")

try:  # a screenshot of the viewer, when Playwright and chromium are there
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 760})
        page.goto((work / "breakout" / "viewer.html").resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=60000)
        page.evaluate("window.s3taViewer.seek(20)")
        page.screenshot(path=str(img / "viewer.png"))
        browser.close()
except Exception as error:  # noqa: BLE001 - the screenshot is optional
    print(f"no viewer screenshot: {error}")
PYEOF
echo "figures in $IMG; results in $WORK/task/analysis and $WORK/breakout/analysis"
