"""The call tones in directcall/static/directcall/audio/ are what scripts/make_tones.py makes."""

from __future__ import annotations

import array
import subprocess
import sys
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_tones.py"
AUDIO = ROOT / "directcall" / "static" / "directcall" / "audio"
# name: duration in seconds
TONES = {"ringback.wav": 6.0, "ringtone.wav": 3.0, "end.wav": 0.4}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tones")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, capture_output=True)
    return out


def test_script_writes_exactly_the_tones(generated):
    assert sorted(p.name for p in generated.iterdir()) == sorted(TONES)


@pytest.mark.parametrize("name", sorted(TONES))
def test_committed_file_is_reproducible(generated, name):
    committed = AUDIO / name
    assert committed.is_file(), f"{committed} is missing: run scripts/make_tones.py"
    assert (generated / name).read_bytes() == committed.read_bytes(), (
        f"{committed} differs from what scripts/make_tones.py makes: run it and keep the output"
    )


@pytest.mark.parametrize("name", sorted(TONES))
def test_format_and_duration(name):
    path = AUDIO / name
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 8000
        assert wav.getcomptype() == "NONE"
        assert wav.getnframes() / wav.getframerate() == pytest.approx(TONES[name], abs=0.01)
        frames = wav.readframes(wav.getnframes())
    assert path.stat().st_size < 100_000
    samples = array.array("h", frames)
    if sys.byteorder == "big":
        samples.byteswap()  # WAV samples are little-endian
    # Audible, not clipped, and silent at both ends (fades; seamless looping).
    assert 3000 < max(abs(s) for s in samples) < 32000
    assert abs(samples[0]) < 50 and abs(samples[-1]) < 50
