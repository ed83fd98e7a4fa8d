"""EBU Tech 3341 (loudness meters) and Tech 3342 (loudness range) test signals and pass/fail rules.

Signals are synthesized from the documents' descriptions (numpy only, so CI can use them); tolerances are the
standards' own: +-0.1 LU for M/S/I, +-1 LU for LRA, +0.2/-0.4 dB for true peak.
"""

from __future__ import annotations

import numpy as np

EBU_RATE = 48000


def _sine_segments(segments: list[tuple[float, float]], rate: int = EBU_RATE, freq: float = 1000.0) -> np.ndarray:
    """A phase-continuous 1 kHz sine through (seconds, dBFS) segments; stereo, identical channels."""
    gains = np.concatenate([np.full(int(round(s * rate)), 10 ** (db / 20)) for s, db in segments])
    x = gains * np.sin(2 * np.pi * freq * np.arange(len(gains)) / rate)
    return np.vstack([x, x])


def _true_peak_sine(divisor: int, amplitude: float, phase_deg: float, seconds: float = 5.0) -> np.ndarray:
    """Tech 3341 cases 15-19: a sine at fs/divisor, given amplitude and starting phase, 20 ms fades."""
    n = np.arange(int(seconds * EBU_RATE))
    x = amplitude * np.sin(2 * np.pi * n / divisor + np.deg2rad(phase_deg))
    ramp = int(0.02 * EBU_RATE)
    env = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    x[:ramp] *= env
    x[-ramp:] *= env[::-1]
    return np.vstack([x, x])


def ebu_cases() -> list[tuple[str, str, np.ndarray, dict]]:
    """(case id, description, (channels, n) signal at 48 kHz, expectation) for each synthesized case."""
    five = [(-28, 1.0), (-28, 1.0), (-24, 1.0), (-30, 1.0), (-30, 1.0)]  # L R C Ls Rs, dBFS
    n5 = np.arange(20 * EBU_RATE)
    surround = np.vstack([10 ** (db / 20) * np.sin(2 * np.pi * 1000 * n5 / EBU_RATE) for db, _ in five])
    case9 = [(1.34, -20.0), (1.66, -30.0)] * 10
    case12 = [(0.18, -20.0), (0.22, -30.0)] * 25
    cases = [
        ("3341-1", "1 kHz -23 dBFS 20 s", _sine_segments([(20, -23)]), {"I": -23, "M": -23, "S": -23}),
        ("3341-2", "1 kHz -33 dBFS 20 s", _sine_segments([(20, -33)]), {"I": -33, "M": -33, "S": -33}),
        ("3341-3", "-36/-23/-36 dBFS 10/60/10 s", _sine_segments([(10, -36), (60, -23), (10, -36)]), {"I": -23}),
        (
            "3341-4",
            "-72/-36/-23/-36/-72 dBFS 10/10/60/10/10 s",
            _sine_segments([(10, -72), (10, -36), (60, -23), (10, -36), (10, -72)]),
            {"I": -23},
        ),
        ("3341-5", "-26/-20/-26 dBFS 20/20.1/20 s", _sine_segments([(20, -26), (20.1, -20), (20, -26)]), {"I": -23}),
        ("3341-6", "5.0: L,R -28, C -24, Ls,Rs -30 dBFS 20 s", surround, {"I": -23}),
        ("3341-9", "1.34 s -20 / 1.66 s -30 dBFS x10: S constant after 3 s", _sine_segments(case9), {"S_const": -23}),
        ("3341-12", "0.18 s -20 / 0.22 s -30 dBFS x25: M constant after 1 s", _sine_segments(case12), {"M_const": -23}),
        ("3341-15", "fs/4, 0.5, phase 0 deg", _true_peak_sine(4, 0.5, 0.0), {"TP": -6}),
        ("3341-16", "fs/4, 0.5, phase 45 deg", _true_peak_sine(4, 0.5, 45.0), {"TP": -6}),
        ("3341-17", "fs/6, 0.5, phase 60 deg", _true_peak_sine(6, 0.5, 60.0), {"TP": -6}),
        ("3341-18", "fs/8, 0.5, phase 67.5 deg", _true_peak_sine(8, 0.5, 67.5), {"TP": -6}),
        ("3341-19", "fs/4, 1.41, phase 45 deg", _true_peak_sine(4, 1.41, 45.0), {"TP": 3}),
        ("3342-1", "-20 then -30 dBFS, 20 s each", _sine_segments([(20, -20), (20, -30)]), {"LRA": 10}),
        ("3342-2", "-20 then -15 dBFS, 20 s each", _sine_segments([(20, -20), (20, -15)]), {"LRA": 5}),
        ("3342-3", "-40 then -20 dBFS, 20 s each", _sine_segments([(20, -40), (20, -20)]), {"LRA": 20}),
        (
            "3342-4",
            "-50/-35/-20/-35/-50 dBFS, 20 s each",
            _sine_segments([(20, -50), (20, -35), (20, -20), (20, -35), (20, -50)]),
            {"LRA": 15},
        ),
    ]
    return cases


def check(expect: dict, result: dict) -> dict[str, tuple[float | None, bool]]:
    """Per expectation: (measured value, pass) from a loudness-ebur128 result dict."""
    out: dict[str, tuple[float | None, bool]] = {}
    for what, want in expect.items():
        if what == "I":
            got = result["integrated_loudness"]
            out[what] = (got, abs(got - want) <= 0.1)
        elif what in ("M", "S"):
            got = result["momentary_max" if what == "M" else "short_term_max"]
            out[what] = (got, got is not None and abs(got - want) <= 0.1)
        elif what in ("M_const", "S_const"):
            curve = result["momentary" if what == "M_const" else "short_term"]
            # Essentia emits complete windows only: value i covers the window ending at (window + i * hop) s,
            # so every value is already "after 1 s" (M) / "after 3 s" (S)
            values = list(curve)
            worst = max(values, key=lambda v: abs(v - want)) if values and None not in values else None
            out[what] = (worst, worst is not None and abs(worst - want) <= 0.1)
        elif what == "TP":
            got = result["true_peak"]
            out[what] = (got, got is not None and want - 0.4 <= got <= want + 0.2)
        elif what == "LRA":
            got = result["loudness_range"]
            out[what] = (got, abs(got - want) <= 1.0)
    return out
