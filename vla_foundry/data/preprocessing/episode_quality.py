"""Per-episode quality report of the robotics job (every source), and the optional drop of still samples.

For each converted episode the report holds its frames and duration, timestamp gaps and jitter beyond the
tolerance, black and frozen camera frames, non-finite low-dim values, action jumps above a threshold and still
segments, plus what the converter found itself (e.g. MCAP streams older than the tolerance). Camera frames are
watched as sample cutting pulls them from the episode's lazy stream, so the report costs no extra decoding and
memory stays bounded by one previous frame per camera.

Rules (an episode breaking one is listed under it; `--qa_fail_on` makes rules fatal for the job):
timestamp_gap, black_frame, frozen_frame, non_finite, action_jump, still_segment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError

RULES = ("timestamp_gap", "black_frame", "frozen_frame", "non_finite", "action_jump", "still_segment")
# Listed steps per finding are capped so one broken episode cannot bloat processing_metadata.json.
MAX_LISTED = 20
# Frames are compared on a strided view: enough for "black" and "identical", cheap on large images.
PIXEL_STRIDE = 4


def check_rule_names(names: list[str]) -> None:
    """A `ConfigError` naming the closest valid rule for each unknown name in `names`."""
    for name in names:
        if name not in RULES:
            close = closest_names(name, RULES, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"qa_fail_on: unknown rule {name!r}{hint}; valid: {', '.join(RULES)}")


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True in a 1-D bool array as [(first, last)] index pairs."""
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def step_change(lowdim: dict[str, np.ndarray], fields: list[str]) -> np.ndarray:
    """(L - 1,) largest absolute change from row t to row t + 1 over `fields` (NaN where a value is not finite)."""
    changes = [
        np.abs(np.diff(lowdim[f].reshape(len(lowdim[f]), -1).astype(np.float64), axis=0)).max(axis=1)
        for f in fields
        if lowdim[f].size
    ]
    if not changes:
        return np.zeros(0)
    with np.errstate(invalid="ignore"):
        return np.max(np.stack(changes), axis=0)


def still_fields_of(names: list[str], wanted: list[str] | None, episode_id: str) -> list[str]:
    """The fields judged for stillness: `wanted` (each must exist) or every field."""
    if wanted is None:
        return sorted(names)
    missing = [f for f in wanted if f not in names]
    if missing:
        from vla_foundry.data.preprocessing.episodes import EpisodeError

        raise EpisodeError(episode_id, f"still_fields {missing} not among its fields {sorted(names)}", "missing_field")
    return list(wanted)


def is_still_window(lowdim: dict[str, np.ndarray], valid: np.ndarray, fields: list[str], threshold: float) -> bool:
    """Whether every step between the window's valid rows (T, D) changes by less than `threshold`."""
    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        return False
    change = step_change({f: lowdim[f][rows] for f in fields}, fields)
    # NaN compares False: a window with a non-finite value is never called still.
    return bool(np.all(change < threshold))


class EpisodeQuality:
    """The report of one episode: `observe` wraps its frame stream, `finish` computes the rest."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self.black: dict[str, list[int]] = {}
        self.frozen: dict[str, list[tuple[int, int]]] = {}
        self._previous: dict[str, np.ndarray] = {}
        self._run_start: dict[str, int] = {}
        self.frames_seen = 0

    def observe(self, episode: Any) -> Any:
        """The same episode with a frame stream that records black and frozen frames as it is consumed."""
        for cam in episode.cameras:
            self.black[cam], self.frozen[cam] = [], []
        return dataclasses.replace(episode, frames=self._watch(episode.frames))

    def _watch(self, frames: Iterator[tuple[int, dict[str, np.ndarray]]]) -> Iterator[tuple[int, dict]]:
        for t, images in frames:
            for cam, image in images.items():
                if cam in self.black:
                    self._frame(cam, t, image)
            self.frames_seen = t + 1
            yield t, images
        for cam in list(self._run_start):
            self._close_run(cam, self.frames_seen - 1)

    def _frame(self, cam: str, t: int, image: np.ndarray) -> None:
        small = np.asarray(image[::PIXEL_STRIDE, ::PIXEL_STRIDE], dtype=np.int16)  # (H/4, W/4, 3)
        if small.mean() <= self.params.qa_black_level:
            self.black[cam].append(t)
        previous = self._previous.get(cam)
        same = previous is not None and previous.shape == small.shape
        if same and float(np.abs(small - previous).mean()) <= self.params.qa_frozen_max_diff:
            self._run_start.setdefault(cam, t - 1)
        else:
            self._close_run(cam, t - 1)
        self._previous[cam] = small

    def _close_run(self, cam: str, last: int) -> None:
        start = self._run_start.pop(cam, None)
        if start is not None and last - start + 1 >= self.params.qa_frozen_min_frames:
            self.frozen[cam].append((start, last))

    def finish(self, episode: Any) -> dict[str, Any]:
        """The episode's report: findings per rule, and `failed_rules`, the rules it breaks."""
        p = self.params
        length = episode.length
        report: dict[str, Any] = {"frames": length}
        failed: set[str] = set()

        timestamps = episode.timestamps
        if timestamps is not None and len(timestamps) > 1:
            ts = np.asarray(timestamps, dtype=np.float64)
            diffs = np.diff(ts)
            period = 1.0 / p.fps if p.fps else float(np.median(diffs))
            tolerance = p.tolerance_s if p.tolerance_s is not None else period / 2
            off = np.flatnonzero(np.abs(diffs - period) > tolerance)
            gaps = np.flatnonzero(diffs - period > tolerance)
            report["duration_s"] = round(float(ts[-1] - ts[0]), 6)
            report["timestamps"] = {
                "period_s": round(period, 6),
                "jitter_s": round(float(np.std(diffs)), 6),
                "steps_beyond_tolerance": len(off),
                "gaps": [{"after_step": int(i), "gap_s": round(float(diffs[i]), 6)} for i in gaps[:MAX_LISTED]],
                "num_gaps": len(gaps),
                "non_increasing": int(np.count_nonzero(diffs <= 0)),
            }
            if len(gaps) or np.any(diffs <= 0):
                failed.add("timestamp_gap")
        elif p.fps:
            report["duration_s"] = round(length / p.fps, 6)
        for name, value in episode.quality.items():
            report[name] = value
        stale = episode.quality.get("stream_gaps", {})
        if any(s.get("stale_steps", 0) for s in stale.values()):
            failed.add("timestamp_gap")

        if episode.cameras:
            report["cameras"] = {
                cam: {
                    "frames_checked": self.frames_seen,
                    "black_frames": len(self.black.get(cam, [])),
                    "black_steps": self.black.get(cam, [])[:MAX_LISTED],
                    "frozen_segments": [list(s) for s in self.frozen.get(cam, [])[:MAX_LISTED]],
                }
                for cam in episode.cameras
            }
            if any(self.black.get(cam) for cam in episode.cameras):
                failed.add("black_frame")
            if any(self.frozen.get(cam) for cam in episode.cameras):
                failed.add("frozen_frame")

        non_finite = {
            name: int(np.size(v) - np.count_nonzero(np.isfinite(v)))
            for name, v in episode.lowdim.items()
            if np.issubdtype(np.asarray(v).dtype, np.floating)
        }
        report["non_finite"] = {k: n for k, n in non_finite.items() if n}
        if report["non_finite"]:
            failed.add("non_finite")

        if p.qa_action_jump_threshold is not None:
            names = p.qa_action_fields or [n for n in episode.lowdim if "action" in n]
            jumps = {}
            for name in names:
                if name not in episode.lowdim:
                    continue
                change = step_change(episode.lowdim, [name])
                steps = np.flatnonzero(change > p.qa_action_jump_threshold) + 1
                if len(steps):
                    jumps[name] = {"count": len(steps), "steps": steps[:MAX_LISTED].tolist()}
            report["action_jumps"] = jumps
            if jumps:
                failed.add("action_jump")

        fields = still_fields_of(list(episode.lowdim), p.still_fields, episode.episode_id)
        still = step_change(episode.lowdim, fields) < p.still_threshold  # (L - 1,): step t -> t + 1 is still
        segments = [(a, b + 1) for a, b in runs(still) if b + 1 - a + 1 >= p.qa_still_min_steps]
        report["still_segments"] = [list(s) for s in segments[:MAX_LISTED]]
        report["still_steps"] = int(sum(b - a + 1 for a, b in segments))
        if segments:
            failed.add("still_segment")

        report["failed_rules"] = [r for r in RULES if r in failed]
        return report


def summarize(episodes: dict[str, dict[str, Any]], fatal: list[str]) -> dict[str, Any]:
    """Totals over the episode reports: frames, duration, and the episodes breaking each rule."""
    flagged = {rule: sorted(e for e, r in episodes.items() if rule in r.get("failed_rules", [])) for rule in RULES}
    durations = [r["duration_s"] for r in episodes.values() if "duration_s" in r]
    return {
        "episodes": len(episodes),
        "frames": sum(r["frames"] for r in episodes.values()),
        "duration_s": round(sum(durations), 3) if durations else None,
        "flagged": {rule: eids for rule, eids in flagged.items() if eids},
        "fatal_rules": list(fatal),
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The printed summary: one line of totals, then one line per broken rule with its first episodes."""
    duration = f", {summary['duration_s']} s" if summary.get("duration_s") is not None else ""
    lines = [f"quality: {summary['episodes']} episodes, {summary['frames']} frames{duration}"]
    if not summary["flagged"]:
        lines[0] += ", no rule broken"
    for rule, eids in summary["flagged"].items():
        shown = ", ".join(eids[:5]) + (f" (+{len(eids) - 5} more)" if len(eids) > 5 else "")
        fatal = " [fatal]" if rule in summary.get("fatal_rules", []) else ""
        lines.append(f"  {rule}{fatal}: {len(eids)} episode(s): {shown}")
    return "\n".join(lines)


def fatal_findings(episodes: dict[str, dict[str, Any]], fatal: list[str]) -> list[str]:
    """'episode: rule' for each episode breaking a rule of `fatal`, in episode order."""
    return [f"{e}: {rule}" for e, r in episodes.items() for rule in r.get("failed_rules", []) if rule in fatal]
