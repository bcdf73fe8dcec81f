#!/usr/bin/env python3
"""Generate the call tones of the browser SDK: small mono 8 kHz 16-bit WAV files.

    python scripts/make_tones.py [OUT_DIR]   # default: directcall/static/directcall/audio/

Standard library only, and deterministic: running it again writes byte-identical files
(``tests/test_tones.py`` checks that the committed files are what this script makes).

- ``ringback.wav`` — what the caller hears while the call rings: 440 Hz + 480 Hz (the North
  American ringback), 2 s on and 4 s off; one 6-second cycle, which the player loops.
- ``ringtone.wav`` — the callee's default ringtone: a soft "ding-dong" (E5 then C5, twice,
  bell-like decay), then a rest; a 3-second loop.
- ``end.wav`` — a short (0.4 s) descending beep when a call ends.

Every tone burst starts and ends with a short raised-cosine fade, so that nothing clicks,
and every file starts and ends in silence, so that a looping player joins them seamlessly.
"""

from __future__ import annotations

import math
import struct
import sys
import wave
from collections.abc import Callable, Iterable
from pathlib import Path

RATE = 8000  # samples per second
SAMPLE_WIDTH = 2  # bytes: signed 16-bit little-endian
FADE = 0.015  # seconds of fade-in and fade-out around each burst
DEFAULT_OUT = (
    Path(__file__).resolve().parent.parent / "directcall" / "static" / "directcall" / "audio"
)


def _fade(t: float, length: float, fade: float = FADE) -> float:
    """Raised-cosine fade-in over the first ``fade`` seconds and fade-out over the last."""
    if t < 0 or t >= length:
        return 0.0
    edge = min(t, length - t)
    if edge >= fade:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * edge / fade)


def _silence(duration: float) -> list[float]:
    return [0.0] * round(duration * RATE)


def _burst(duration: float, wave_at: Callable[[float], float]) -> list[float]:
    """``duration`` seconds of ``wave_at(t)`` (t in seconds), faded in and out."""
    n = round(duration * RATE)
    return [wave_at(i / RATE) * _fade(i / RATE, n / RATE) for i in range(n)]


def _dual_tone(f1: float, f2: float, amplitude: float) -> Callable[[float], float]:
    return lambda t: amplitude * (math.sin(2 * math.pi * f1 * t) + math.sin(2 * math.pi * f2 * t))


def _bell(freq: float, amplitude: float, decay: float) -> Callable[[float], float]:
    """A soft bell: fundamental plus a little second harmonic, decaying exponentially."""

    def at(t: float) -> float:
        partials = math.sin(2 * math.pi * freq * t) + 0.25 * math.sin(4 * math.pi * freq * t)
        return amplitude * math.exp(-t / decay) * partials / 1.25

    return at


def ringback() -> list[float]:
    """440 + 480 Hz for 2 s, then 4 s of silence (one cadence cycle)."""
    return _burst(2.0, _dual_tone(440.0, 480.0, 0.22)) + _silence(4.0)


def ringtone() -> list[float]:
    """E5-C5, E5-C5, rest: 3 s."""
    e5, c5 = 659.26, 523.25
    samples: list[float] = []
    for freq in (e5, c5, e5, c5):
        samples += _burst(0.42, _bell(freq, 0.5, 0.25)) + _silence(0.08)
    return samples + _silence(3.0 - len(samples) / RATE)


def end() -> list[float]:
    """A 0.4 s beep gliding down from 740 Hz to 440 Hz (phase-continuous)."""
    duration, f0, f1 = 0.4, 740.0, 440.0
    n = round(duration * RATE)
    samples: list[float] = []
    phase = 0.0
    for i in range(n):
        t = i / RATE
        freq = f0 * (f1 / f0) ** (t / duration)
        samples.append(0.4 * math.sin(phase) * _fade(t, duration, 0.03))
        phase += 2 * math.pi * freq / RATE
    return samples


TONES: dict[str, Callable[[], list[float]]] = {
    "ringback.wav": ringback,
    "ringtone.wav": ringtone,
    "end.wav": end,
}


def write_wav(path: Path, samples: Iterable[float]) -> None:
    """Write samples in [-1, 1] as a mono 16-bit PCM WAV file at ``RATE``."""
    frames = b"".join(struct.pack("<h", max(-32767, min(32767, round(s * 32767)))) for s in samples)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(RATE)
        out.writeframes(frames)


def generate(out_dir: Path = DEFAULT_OUT) -> list[Path]:
    """Write every tone into ``out_dir`` (created if needed); return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in TONES.items():
        path = out_dir / name
        write_wav(path, make())
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    for path in generate(out_dir):
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
