"""Writers of small robot logs with the real libraries (h5py, mcap + mcap-ros2-support, robodm) for the source tests.

Like the LeRobot fixtures, every frame encodes (episode, timestep, camera) as a flat colour (`make_frame`) and the
low-dim values carry the same ids: state rows [episode, t, 0.5 t], action rows [100 episode + t, -t].
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from vla_foundry.data.scripts.make_synthetic_lerobot import action_rows, make_frame, state_rows


def jpeg_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_aloha(
    folder: Path,
    lengths: list[int] = (6, 8),
    drop: dict[int, str] | None = None,
    timestamps: dict[int, np.ndarray] | None = None,
    edit: dict[int, object] | None = None,
) -> Path:
    """ALOHA/ACT episode_<e>.hdf5 files: camera `top` raw [L, H, W, 3], camera `wrist` JPEG bytes zero-padded
    into [L, N] uint8 (ACT's compressed form); `drop[e]` names a dataset left out of episode e, `timestamps[e]`
    adds /timestamps, `edit[e](qpos, action, top)` changes arrays in place before writing."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    for e, n in enumerate(lengths):
        qpos, action = state_rows(e, n), action_rows(e, n)
        top = np.stack([make_frame(e, t, 0) for t in range(n)])
        encoded = [jpeg_bytes(make_frame(e, t, 1)) for t in range(n)]
        if edit and e in edit:
            edit[e](qpos, action, top)
        wrist = np.zeros((n, max(map(len, encoded)) + 7), np.uint8)
        for t, data in enumerate(encoded):
            wrist[t, : len(data)] = np.frombuffer(data, np.uint8)
        datasets = {
            "observations/qpos": qpos,
            "observations/qvel": np.zeros_like(qpos),
            "action": action,
            "observations/images/top": top,
            "observations/images/wrist": wrist,
        }
        if timestamps and e in timestamps:
            datasets["timestamps"] = timestamps[e]
        with h5py.File(folder / f"episode_{e}.hdf5", "w") as f:
            f.attrs["sim"] = False
            for key, value in datasets.items():
                if drop and drop.get(e) == key:
                    continue
                f.create_dataset(key, data=value)
    return folder


def make_robomimic(path: Path, lengths: list[int] = (5, 7)) -> Path:
    """One robomimic file: data/demo_<e>/actions, obs/robot0_eef_pos (state rows), obs/agentview_image."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for e, n in enumerate(lengths):
            demo = data.create_group(f"demo_{e}")
            demo.attrs["num_samples"] = n
            demo.create_dataset("actions", data=action_rows(e, n))
            demo.create_dataset("obs/robot0_eef_pos", data=state_rows(e, n))
            demo.create_dataset("obs/agentview_image", data=np.stack([make_frame(e, t, 0) for t in range(n)]))
        data.attrs["language_instruction"] = "lift the cube"
    return path


# ---------------------------------------------------------------------------------------------------------------
# MCAP (ROS 2 CDR messages + JSON channels)

_TIME = "int32 sec\nuint32 nanosec"
_HEADER = "builtin_interfaces/Time stamp\nstring frame_id"
_DEPENDENCIES = f"{'=' * 80}\nMSG: std_msgs/Header\n{_HEADER}\n{'=' * 80}\nMSG: builtin_interfaces/Time\n{_TIME}\n"
MSGDEFS = {
    "sensor_msgs/msg/JointState": "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\n"
    "float64[] effort\n" + _DEPENDENCIES,
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n" + _DEPENDENCIES,
    "sensor_msgs/msg/Image": "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
    "uint8 is_bigendian\nuint32 step\nuint8[] data\n" + _DEPENDENCIES,
}
# Topic -> (first message ms, period ms): rates that do not line up with each other or with the target fps.
MCAP_STREAMS = {
    "/camera/head/compressed": (0, 100.0),
    "/camera/wrist/image_raw": (20, 1000 / 15),
    "/joint_states": (5, 20.0),
    "/arm/command": (10, 50.0),
}
MCAP_MAPPING = {
    "cameras": {"head": "/camera/head/compressed", "wrist": "/camera/wrist/image_raw"},
    "lowdim": {
        "observation.state": {"topic": "/joint_states", "field": "position"},
        "action": {"topic": "/arm/command", "field": ["data", "gripper"]},
    },
    "language": {"topic": "/instruction", "field": "text"},
}


def mcap_times(duration_ms: float, skip: tuple[float, float] | None = None) -> dict[str, list[int]]:
    """Message log times (ms) per topic; `skip` = (start, end) leaves /joint_states silent in between."""
    out = {}
    for topic, (first, period) in MCAP_STREAMS.items():
        times = [round(first + i * period) for i in range(int((duration_ms - first) / period) + 1)]
        if skip and topic == "/joint_states":
            times = [t for t in times if not skip[0] < t < skip[1]]
        out[topic] = times
    return out


def _header(ms: int) -> dict:
    return {"stamp": {"sec": ms // 1000, "nanosec": (ms % 1000) * 1_000_000}, "frame_id": ""}


def write_mcap(
    paths: list[Path], episode: int, times: dict[str, list[int]], split_ms: float | None = None, omit: str = ""
) -> None:
    """A log of `times` messages: JointState position [episode, t_ms]; JSON /arm/command {data: [episode, t_ms],
    gripper}; camera frames encoding (episode, message index, camera); JSON /instruction once. With two paths
    (a rosbag2 split) messages before `split_ms` go to the first file. `omit` names a topic left out."""
    from mcap.writer import Writer as McapWriter
    from mcap_ros2.writer import Writer

    files = [open(p, "wb") for p in paths]  # noqa: SIM115 - closed below
    ros = [Writer(f) for f in files]
    schemas = [{name: w.register_msgdef(name, text) for name, text in MSGDEFS.items()} for w in ros]
    # JSON channels go through the same files' underlying mcap writer.
    json_channels = []
    for w in ros:
        raw: McapWriter = w._writer
        schema = raw.register_schema("json_object", "jsonschema", b'{"type": "object"}')
        json_channels.append(
            {t: raw.register_channel(t, "json", schema) for t in ("/arm/command", "/instruction") if t != omit}
        )
    events = [(t, topic, i) for topic, ts in times.items() if topic != omit for i, t in enumerate(ts)]
    events.append((0, "/instruction", 0))
    for t, topic, i in sorted(events, key=lambda e: e[0]):
        k = 0 if split_ms is None or t < split_ms else 1
        ns = t * 1_000_000
        if topic in ("/arm/command", "/instruction"):
            body = {"data": [episode, t], "gripper": 0.5} if topic == "/arm/command" else {"text": "stack the blocks"}
            ros[k]._writer.add_message(json_channels[k][topic], ns, json.dumps(body).encode(), ns)
        elif topic == "/joint_states":
            message = {"header": _header(t), "name": ["a", "b"], "position": [episode, t], "velocity": [], "effort": []}
            ros[k].write_message(topic, schemas[k]["sensor_msgs/msg/JointState"], message, ns)
        elif topic == "/camera/head/compressed":
            message = {"header": _header(t), "format": "jpeg", "data": jpeg_bytes(make_frame(episode, i, 0))}
            ros[k].write_message(topic, schemas[k]["sensor_msgs/msg/CompressedImage"], message, ns)
        else:
            frame = make_frame(episode, i, 1)
            h, w = frame.shape[:2]
            message = {
                "header": _header(t),
                "height": h,
                "width": w,
                "encoding": "rgb8",
                "is_bigendian": 0,
                "step": 3 * w,
                "data": frame.tobytes(),
            }
            ros[k].write_message(topic, schemas[k]["sensor_msgs/msg/Image"], message, ns)
    for w, f in zip(ros, files):
        w.finish()
        f.close()


# ---------------------------------------------------------------------------------------------------------------
# Robo-DM


def make_robodm(folder: Path, lengths: list[int] = (5, 7)) -> Path:
    """episode_<e>.vla trajectories written by robodm: observation/images/cam_high (rawvideo), observation/state,
    action, at 10 Hz."""
    import robodm

    folder.mkdir(parents=True, exist_ok=True)
    for e, n in enumerate(lengths):
        trajectory = robodm.Trajectory(path=str(folder / f"episode_{e}.vla"), mode="w", video_codec="rawvideo")
        state, action = state_rows(e, n), action_rows(e, n)
        for t in range(n):
            ms = {"timestamp": 100 * t, "time_unit": "ms"}
            trajectory.add("observation/images/cam_high", make_frame(e, t, 0), **ms)
            trajectory.add("observation/state", state[t], **ms)
            trajectory.add("action", action[t], **ms)
        trajectory.close()
    return folder
