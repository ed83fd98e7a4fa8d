"""Cross-check MTG's CREPE tiny (crepe-tiny-1.pb, Essentia PitchCREPE) with mirstream's torch CREPE (pitch_crepe).

Signals at 16 kHz with a known f0: pure sines (110-880 Hz), an exponential glide 150 → 900 Hz, and a
"real-ish" line (a 12-harmonic tone with 5.5 Hz ±30 cent vibrato, note changes, breath noise at -35 dB).
Both trackers give an f0 and a confidence every 10 ms; frames are matched by time. Printed per signal:
median |Δ| in cents between the two on frames both call voiced (confidence ≥ 0.5), the share of those frames
within 10 and 50 cents, the voicing agreement, and each tracker's median error against the true f0.

    .venv/bin/python tools/mtg/compare_crepe.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SR = 16000
HOP_S = 0.01


def signals() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name → (samples, true f0 per sample)."""
    rng = np.random.default_rng(2018)
    out = {}
    for f in (110.0, 220.0, 440.0, 880.0):
        t = np.arange(3 * SR) / SR
        out[f"sine {f:g} Hz"] = (0.5 * np.sin(2 * np.pi * f * t), np.full(t.size, f))
    t = np.arange(4 * SR) / SR
    f0 = 150.0 * (900.0 / 150.0) ** (t / t[-1])
    out["glide 150-900 Hz"] = (0.5 * np.sin(2 * np.pi * np.cumsum(f0) / SR), f0)
    notes = [57, 60, 64, 67, 69, 67, 64, 60]  # A3 C4 E4 G4 A4 G4 E4 C4, 0.6 s each
    base = np.repeat([440.0 * 2 ** ((m - 69) / 12) for m in notes], int(0.6 * SR))
    t = np.arange(base.size) / SR
    f0 = base * 2 ** (30 / 1200 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    tone = sum(np.sin(h * phase) / h for h in range(1, 13))
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.05)
    voice = 0.3 * envelope * tone / np.abs(tone).max() + 10 ** (-35 / 20) * rng.standard_normal(t.size)
    out["harmonic line with vibrato"] = (voice, f0)
    return {k: (x.astype(np.float32), f) for k, (x, f) in out.items()}


def essentia_crepe(samples: np.ndarray, graph: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, f0, confidence) from Essentia's PitchCREPE with MTG's graph, hop 10 ms."""
    from models.essentia_runtime import essentia_standard

    algo = essentia_standard().PitchCREPE(graphFilename=str(graph), hopSize=HOP_S * 1000)
    times, f0, confidence, _ = algo(samples)
    return np.asarray(times), np.asarray(f0), np.asarray(confidence)


def torch_crepe(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, f0, confidence) from mirstream's pitch_crepe analyzer (f0 kept where it calls frames unvoiced)."""
    from models.crepe_torch import CrepeTracker

    tracker = CrepeTracker("tiny", REPO / "models/weights/crepe/tiny.pth", round(HOP_S * SR), 128, 1, False)
    cents, confidence, _ = tracker.track([samples], lambda: None)[0].T
    return np.arange(cents.size) * HOP_S, 10.0 * 2.0 ** (cents / 1200.0), confidence


def compare(graph: Path) -> list[dict[str, float | str]]:
    """One row of agreement figures per signal."""
    rows = []
    for name, (x, truth) in signals().items():
        te, fe, ce = essentia_crepe(x, graph)
        tt, ft, ct = torch_crepe(x)
        idx = np.clip(np.round(te / HOP_S).astype(int), 0, len(tt) - 1)  # torch frame at each Essentia time
        ft, ct = ft[idx], ct[idx]
        true = truth[np.clip(np.round(te * SR).astype(int), 0, len(truth) - 1)]
        ve, vt = ce >= 0.5, ct >= 0.5
        both = ve & vt
        cents = np.abs(1200 * np.log2(fe[both] / ft[both]))
        rows.append(
            {
                "signal": name,
                "frames": int(te.size),
                "median_cents": float(np.median(cents)) if cents.size else float("nan"),
                "max_cents": float(cents.max()) if cents.size else float("nan"),
                "max_confidence_diff": float(np.abs(ce - ct).max()),
                "within_10": float(np.mean(cents <= 10)) if cents.size else float("nan"),
                "within_50": float(np.mean(cents <= 50)) if cents.size else float("nan"),
                "voicing_agreement": float(np.mean(ve == vt)),
                "essentia_vs_truth": float(np.median(np.abs(1200 * np.log2(fe[ve] / true[ve]))))
                if ve.any()
                else float("nan"),
                "torch_vs_truth": float(np.median(np.abs(1200 * np.log2(ft[vt] / true[vt]))))
                if vt.any()
                else float("nan"),
                "voiced_essentia": float(ve.mean()),
                "voiced_torch": float(vt.mean()),
            }
        )
    return rows


def main() -> int:
    """Print the agreement table (MTG's graph read from models/weights/mtg)."""
    rows = compare(REPO / "models/weights/mtg/crepe-tiny-1.pb")
    print(
        "| signal | frames | median / max abs diff (cents) | max abs diff confidence | within 10 c | within 50 c | "
        "voicing agreement | Essentia vs truth (c) | torch vs truth (c) | voiced Essentia / torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['signal']} | {r['frames']} | {r['median_cents']:.3g} / {r['max_cents']:.3g} | "
            f"{r['max_confidence_diff']:.2g} | {100 * r['within_10']:.1f}% | "
            f"{100 * r['within_50']:.1f}% | {100 * r['voicing_agreement']:.1f}% | {r['essentia_vs_truth']:.2f} | "
            f"{r['torch_vs_truth']:.2f} | {100 * r['voiced_essentia']:.0f}% / {100 * r['voiced_torch']:.0f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
