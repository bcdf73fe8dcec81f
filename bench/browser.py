"""Browser benchmark: real calls between two headless Chromium users with fake devices.

    .venv/bin/python bench/browser.py            # 20 calls (docs/performance.md)
    .venv/bin/python bench/browser.py --smoke    # 2 calls (CI)

One daphne process (in-memory channel layer, fresh SQLite database) serves the SDK; two
browser contexts of Debian's Chromium (``CHROMIUM``, default ``/usr/bin/chromium``, with
``--use-fake-device-for-media-stream``) sign in with ``initDirectCall`` and place calls one
after the other. Times are taken inside the pages (``performance.timeOrigin + now()``, one
clock for the whole browser):

- ``call()`` → incoming screen shown: from the caller's ``dc.call(...)`` to the first
  animation frame after the callee's SDK fired ``incoming`` and showed its screen;
- answer → media connected: from the callee's ``dc.answer()`` to the later of the two
  sides' ``media`` events (ICE connected), i.e. until audio can flow both ways;
- reload → audio flowing again (``--reloads``, default 20): during one answered call, one
  page after the other (caller, callee, …) reloads and signs in again; from ``reload()`` until
  the reloaded page's new peer connection and the other page's replacement both report audio
  bytes received and sent (``getStats()``; timed in this process, polled every 25 ms).

Prints the median and the worst of the calls.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BenchError,
    Database,
    daphne,
    django_env,
    machine,
    table,
)

TITLE = "directcall browser benchmark"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
SDK = "/static/directcall/js/directcall.js"

# Runs in each page: sign in, keep the client, stamp the SDK's events.
SIGN_IN = """async (options) => {
  const sdk = await import(options.sdk);
  const now = () => performance.timeOrigin + performance.now();
  window.benchNow = now;
  window.bench = {};
  window.dc = await sdk.initDirectCall({
    accountId: options.accountId, apikey: options.apikey, cuid: options.cuid,
    name: options.name, clevertap: null,
  });
  window.dc.addEventListener("incoming", () => {
    window.bench.incomingEvent = now();
    // The SDK shows its incoming screen right after this event, synchronously; the next
    // animation frame is the first one that paints it.
    requestAnimationFrame(() => { window.bench.incomingShown = now(); });
  });
  window.dc.addEventListener("media", (e) => {
    if (!window.bench.media && ["connected", "completed"].includes(e.detail.state)) {
      window.bench.media = now();
    }
  });
  window.dc.addEventListener("callend", (e) => { window.bench.ended = e.detail; });
  return window.dc.cuid;
}"""

PLACE_CALL = """([receiver]) => {
  window.bench = { t0: window.benchNow() };
  window.outcome = undefined;
  window.dc.call(receiver, "Benchmark call").then(
    (value) => { window.outcome = { resolved: value }; },
    (error) => { window.outcome = { rejected: error }; });
}"""

ANSWER = """() => { window.bench.answer = window.benchNow(); window.dc.answer(); }"""

# Before any script of the page: keep every RTCPeerConnection, to read its audio counters.
KEEP_PCS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})();"""

# Resolves once a peer connection made at or after index `first` has received and sent audio;
# rejects after `timeoutMs`.
AUDIO_FROM = """async ([first, timeoutMs]) => {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const pcs = window.__pcs || [];
    for (let i = first; i < pcs.length; i++) {
      let received = 0, sent = 0;
      (await pcs[i].getStats()).forEach((s) => {
        if (s.kind !== "audio") return;
        if (s.type === "inbound-rtp") received += s.bytesReceived || 0;
        if (s.type === "outbound-rtp") sent += s.bytesSent || 0;
      });
      if (received > 0 && sent > 0) return i;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`no audio both ways on a peer connection from #${first} in ${timeoutMs} ms`);
}"""


def reloads(args: argparse.Namespace, pages: dict, opts: dict) -> list[float]:
    """One answered call; each page in turn reloads: seconds until audio flows both ways again."""
    jane, sam = pages["bench_jane"], pages["bench_sam"]
    timeout = args.timeout * 1000
    sam.evaluate("() => { window.bench = {}; }")
    jane.evaluate(PLACE_CALL, ["bench_sam"])
    sam.wait_for_function("() => window.bench.incomingShown", timeout=timeout)
    sam.evaluate(ANSWER)
    for page in (jane, sam):
        page.evaluate(AUDIO_FROM, [0, timeout])
    samples = []
    for i in range(args.reloads):
        cuid = ("bench_jane", "bench_sam")[i % 2]
        page, other = pages[cuid], pages["bench_sam" if cuid == "bench_jane" else "bench_jane"]
        first_new = other.evaluate("() => window.__pcs.length")
        started = time.monotonic()
        page.reload()
        page.evaluate(SIGN_IN, opts[cuid])
        page.evaluate(AUDIO_FROM, [0, timeout])
        other.evaluate(AUDIO_FROM, [first_new, timeout])
        samples.append((time.monotonic() - started) * 1000)
        print(
            f"[bench] reload {i + 1}/{args.reloads} ({cuid}): audio both ways again after "
            f"{samples[-1]:.0f} ms",
            file=sys.stderr,
            flush=True,
        )
    jane.evaluate("() => window.dc.hangup()")
    sam.wait_for_function("() => window.dc.activeCall === null", timeout=timeout)
    return samples


def run(args: argparse.Namespace, tmp: Path) -> list[dict[str, float]]:
    from playwright.sync_api import expect, sync_playwright

    db = Database(tmp)
    env = django_env(db.url, "memory", "dcbench-browser", None)
    account_id, api_key = db.prepare(env)
    server = daphne("browser", env, tmp / "daphne-browser.log").start()
    base = f"http://127.0.0.1:{server.port}"
    samples: list[dict[str, float]] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True
            )
            try:
                pages, opts_of = {}, {}
                for cuid, name in (("bench_jane", "Jane"), ("bench_sam", "Sam")):
                    context = browser.new_context(base_url=base)
                    context.grant_permissions(["microphone"], origin=base)
                    context.set_default_timeout(args.timeout * 1000)
                    context.add_init_script(KEEP_PCS)
                    page = context.new_page()
                    page.goto("/bench/blank")
                    opts = {
                        "sdk": SDK,
                        "accountId": account_id,
                        "apikey": api_key,
                        "cuid": cuid,
                        "name": name,
                    }
                    assert page.evaluate(SIGN_IN, opts) == cuid
                    pages[cuid], opts_of[cuid] = page, opts
                jane, sam = pages["bench_jane"], pages["bench_sam"]
                timeout = args.timeout * 1000
                for i in range(args.calls):
                    sam.evaluate("() => { window.bench = {}; }")
                    jane.evaluate(PLACE_CALL, ["bench_sam"])
                    sam.wait_for_function("() => window.bench.incomingShown", timeout=timeout)
                    incoming = sam.locator('[data-directcall-screens] [data-screen="incoming"]')
                    expect(incoming).to_be_visible()
                    sam.evaluate(ANSWER)
                    for page in (jane, sam):
                        page.wait_for_function("() => window.bench.media", timeout=timeout)
                    j = jane.evaluate("() => window.bench")
                    s = sam.evaluate("() => window.bench")
                    sample = {
                        "incoming_ms": s["incomingShown"] - j["t0"],
                        "incoming_event_ms": s["incomingEvent"] - j["t0"],
                        "media_ms": max(j["media"], s["media"]) - s["answer"],
                        "media_caller_ms": j["media"] - s["answer"],
                        "media_callee_ms": s["media"] - s["answer"],
                    }
                    samples.append(sample)
                    print(
                        f"[bench] call {i + 1}/{args.calls}: call()→incoming shown "
                        f"{sample['incoming_ms']:.0f} ms, answer→media connected "
                        f"{sample['media_ms']:.0f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                    jane.evaluate("() => window.dc.hangup()")
                    jane.wait_for_function("() => window.outcome !== undefined", timeout=timeout)
                    outcome = jane.evaluate("() => window.outcome")
                    if outcome != {"resolved": "over"}:
                        raise BenchError(f"call {i + 1} ended {outcome}, not over")
                    sam.wait_for_function("() => window.bench.ended", timeout=timeout)
                if args.reloads:
                    samples.append({"reloads": reloads(args, pages, opts_of)})
            finally:
                browser.close()
    except Exception:
        print(f"--- daphne log ({server.log})\n{server.tail(30)}", file=sys.stderr)
        raise
    finally:
        server.stop()
    return samples


def report(samples: list[dict[str, float]]) -> str:
    rows = []
    reloaded = [s["reloads"] for s in samples if "reloads" in s]
    samples = [s for s in samples if "reloads" not in s]
    for key, label in (
        ("incoming_ms", "call() → incoming screen shown"),
        ("media_ms", "answer → media connected (both sides)"),
        ("incoming_event_ms", "  call() → callee's incoming event"),
        ("media_callee_ms", "  answer → callee's ICE connected"),
        ("media_caller_ms", "  answer → caller's ICE connected"),
    ):
        values = [s[key] for s in samples]
        rows.append(
            [label, f"{statistics.median(values):.0f}", f"{max(values):.0f}", str(len(values))]
        )
    for values in reloaded:
        rows.append(
            [
                "reload → audio both ways again",
                f"{statistics.median(values):.0f}",
                f"{max(values):.0f}",
                f"{len(values)} reloads",
            ]
        )
    return table(["measure", "median ms", "worst ms", "calls"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="2 calls, to prove it runs")
    parser.add_argument("--calls", type=int, help="calls to place (default 20; smoke 2)")
    parser.add_argument(
        "--reloads", type=int, help="reloads during one call (default 20; smoke 2; 0: none)"
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per wait")
    parser.add_argument(
        "--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"), help="browser"
    )
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = 2 if args.smoke else 20
    if args.reloads is None:
        args.reloads = 2 if args.smoke else 20
    if not os.access(args.chromium, os.X_OK):
        print(f"Chromium not found at {args.chromium} (apt-get install chromium)", file=sys.stderr)
        return 1
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dcbench-browser-")))
        samples = run(args, tmp)
    print(f"\n## {TITLE}{' (smoke)' if args.smoke else ''}\n")
    print(
        f"Machine: {machine()}; Chromium {args.chromium} headless with fake devices; "
        f"1 daphne (InMemoryChannelLayer, SQLite); {args.calls} calls one after another"
        f"{f', then {args.reloads} reloads in one call' if args.reloads else ''}; "
        f"total {time.monotonic() - started:.0f}s.\n"
    )
    print(report(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
