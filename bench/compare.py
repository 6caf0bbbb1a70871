"""What got better or worse between two result files (`python -m bench --compare`).

Lower is better for every figure we record (times, memory, bytes, ours/reference ratios).
Changes smaller than the noise of these machines are reported as unchanged: 10 % for a
figure's median (runs minutes apart differ that much), 5 % for a paired ratio (both
sides of it saw the same noise). Baseline figures (bare QEMU, `cp`, ...) are left out:
their changes are the machine's, not ours; the ratios against them carry the news.
"""

from __future__ import annotations

from typing import Any

NOISE_METRIC, NOISE_RATIO = 0.10, 0.05


def _verdict(old: float, new: float, noise: float) -> tuple[str, float]:
    change = new / old - 1 if old else 0.0
    if change <= -noise:
        return "better", change
    if change >= noise:
        return "WORSE", change
    return "same", change


def _line(name: str, old: float, new: float, unit: str, noise: float) -> tuple[str, str]:
    verdict, change = _verdict(old, new, noise)
    return verdict, f"   {verdict:6} {name}: {old:.4g} -> {new:.4g} {unit} ({change:+.0%})"


def lines(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for what in ("qemu", "accelerator"):
        if old.get(what) != new.get(what):
            out.append(f"note: {what} differs: {old.get(what)} -> {new.get(what)}")
    old_cpu, new_cpu = old.get("machine", {}).get("cpu"), new.get("machine", {}).get("cpu")
    if old_cpu != new_cpu:
        out.append(f"note: another machine ({old_cpu} -> {new_cpu}): figures may not compare")
    counts = {"better": 0, "WORSE": 0, "same": 0}
    old_measures, new_measures = old.get("measures", {}), new.get("measures", {})
    for key in sorted(set(old_measures) | set(new_measures)):
        before, after = old_measures.get(key), new_measures.get(key)
        if before is None or after is None:
            out.append(f"{key}: only in the {'new' if before is None else 'old'} run")
            continue
        title = after.get("title", "")
        if before["status"] != after["status"]:
            out.append(f"{key} {title}: {before['status']} -> {after['status']}")
        else:
            out.append(f"{key} {title}: {after['status']}")
        references = set(after.get("references", []))
        for name, summary in after.get("metrics", {}).items():
            previous = before.get("metrics", {}).get(name)
            if previous is None or name in references:
                continue
            verdict, text = _line(
                name, previous["median"], summary["median"], summary.get("unit", ""), NOISE_METRIC
            )
            counts[verdict] += 1
            out.append(text)
        for label, summary in after.get("ratios", {}).items():
            previous = before.get("ratios", {}).get(label)
            if previous is None:
                continue
            verdict, text = _line(
                f"{label} (paired)", previous["median"], summary["median"], "x", NOISE_RATIO
            )
            counts[verdict] += 1
            out.append(text)
    out.append(f"{counts['better']} better, {counts['WORSE']} worse, {counts['same']} within noise")
    return out
