"""What `vla-accel fuzz` and `vla-accel soak` share: the generated docs/RELIABILITY.md (one section per
run kind, under a fixed header), the note on the machine the figures come from, and the model they run
(the built-in one, else a random stand-in of the same interface so the runs work on a fresh clone).

ROS-free: the rclpy drivers live in vla_accel_ros/ros/ (fuzz_driver, soak_run) and report through here.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from vla_accel_ros.evaluation.reporting import replace_block

STAND_IN_NOTE = "no built-in model yet: a random stand-in checkpoint of the same interface"


def machine_note() -> str:
    """CPU count and load: the figures of a reliability run are those of a shared, loaded machine."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPU cores shared with other work, load average {load:.1f} at the end"


def resolve_model(model: str | None, tmp: Path, seed: int = 0) -> tuple[str, str | None]:
    """(checkpoint to run, note for the report): `model` as given, else the built-in model, else a random
    stand-in written under `tmp` (the note then says so)."""
    from vla_accel_ros.policy.checkpoint import BUILTIN

    if model is not None:
        return model, None
    if (BUILTIN / "config.json").is_file():
        return "builtin", None
    return str(stand_in_checkpoint(tmp / "stand_in", seed)), STAND_IN_NOTE


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """The `--checkpoint` flag of fuzz and soak: the `model` that `resolve_model` resolves (None: default)."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint folder or 'builtin' (default: builtin, else a stand-in)",
    )


def write_doc_section(doc: Path, key: str, title: str, body: str) -> None:
    """Replace (or append) the section `key` of a generated document; other sections stay, and the header
    is rewritten from RELIABILITY_HEADER."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    first = text.find("<!-- ")
    sections = text[first:].strip() if first >= 0 else ""
    sections = replace_block(sections, key, f"## {title}\n\n{body.rstrip()}\n").strip()
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(RELIABILITY_HEADER.rstrip() + "\n\n" + sections + "\n", encoding="utf-8")


RELIABILITY_HEADER = """# Reliability: bad data, faults, load and soak

Generated: the fuzz section by `vla-accel fuzz`, the load and soak sections by `vla-accel soak`, the faults
section by the fault tests run with VLA_ACCEL_FAULT_REPORT (command in the section). Each rewrites only its
own section; the raw figures are in docs/results/reliability_*.json. The runs use the policy that ships
(the built-in model, vla_accel_ros/assets/builtin) unless a section says otherwise, on a machine with 2 CPU
cores shared with other work, DDS on loopback only: absolute rates and latencies are those of that
machine, not of a robot computer. docs/DEPLOYMENT.md says what a robot sees in each fault.

What these runs found, now fixed in the nodes (the fuzz and fault tests keep them fixed):
- crashes: a `sim/episode` event with a stamp that is not an int64 (NaN, Infinity, a string, 2**70)
  raised out of the controller's and the kinematics node's callbacks; a PNG declaring 30000 x 30000
  pixels raised PIL's DecompressionBombError out of the inference node (compressed transport); a
  `vla/kalman_prediction` of the wrong length was stored and crashed the controller's next good action
  (markers);
- commands from bad data: the controller passed actions whose camera image was stale, from the future,
  zero or negative (e.g. a backlog delivered after a link outage); the simulated arm stepped on commands
  for observations it never made; a finite action beyond what the token decoder can emit was clipped and
  passed on (it is now refused: control/decoder_range.py); the workspace box trusted an `ee_pose` with a
  non-unit or NaN quaternion, a huge position, or a stamp far in the future or in the past (the box's
  own fuzz target found it: 4 commands in 300 messages);
- poisoning: one joint state or camera frame stamped far in the future made every later, correct one
  look like it went backwards (the inference node then acted on a frozen input that never went stale);
  an episode start stamped in the future made the kinematics node ignore every executed action;
- slow hold: the watchdog checked every T/4 from start-up, so the first hold came up to 1.25 T after the
  last action; its timer now restarts with each command (first hold one period T after it);
- no hold on a clean stop: a controller stopped with Ctrl-C or SIGTERM left the last command standing
  (for a twist driver without a command timeout, the last velocity); it now sends one last hold;
- runtime fallbacks (a precision or decoding that failed inside the policy) were flagged in the
  VlaAction but not reported on /diagnostics; non-physical joint positions (|q| > 1e4) were accepted.

Known and left as designed: after an episode start the kinematics node takes the first joint set it
receives as the arm's, so a malformed set arriving first stays until the next start (its joint
derivatives only; the proxies come from executed actions). A controller killed with SIGKILL sends
nothing more: what the arm then does is its driver's (the faults section says it per output type).
"""


FAULTS_COMMAND = (
    "VLA_ACCEL_TEST_MODEL=builtin VLA_ACCEL_FAULT_REPORT=docs/results/reliability_faults.json "
    ".venv/bin/python -m pytest -s test/test_faults.py test/test_two_host.py test/test_output_faults.py"
)


def faults_markdown(data: dict[str, Any]) -> str:
    """The fault measurements of the tests (test/test_faults.py, test_two_host.py, test_output_faults.py)
    as a table: one row per fault, its measured values in words."""
    lines = [
        f"`{data.get('command', FAULTS_COMMAND)}`",
        "",
        f"Watchdog timeout {data.get('watchdog_timeout_s', 0.5):g} s; "
        f"model: {data.get('model', 'see command')}; {data.get('machine', '')}".rstrip("; "),
        "",
        "The `up` rows start their own graph on a tiny random checkpoint (a start-up is what they time); "
        "the `actions stop` and `controller` rows run the controller alone, this test being its inference "
        "node and its arm (no model).",
        "",
        "| fault | measured |",
        "|---|---|",
    ]
    for fault in data.get("faults", []):
        values = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fault.items() if k != "fault")
        lines.append(f"| {fault['fault']} | {values} |")
    return "\n".join(lines) + "\n"


def write_faults_section(json_path: Path, doc: Path) -> None:
    """Render the fault JSON the tests appended to (VLA_ACCEL_FAULT_REPORT) into its docs section."""
    data = json.loads(json_path.read_text(encoding="utf-8"))
    write_doc_section(doc, "faults", "Faults (hold latencies, per output type)", faults_markdown(data))


def stand_in_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A small random checkpoint (the built-in model's interface) for runs on machines without it."""
    import torch

    from vla_accel_ros.policy.checkpoint import save_checkpoint
    from vla_accel_ros.policy.config import tiny_config
    from vla_accel_ros.policy.model import VlaModel
    from vla_accel_ros.sim.tasks import TASKS

    config = tiny_config(list(TASKS.values()))
    torch.manual_seed(seed)
    save_checkpoint(
        VlaModel(config).eval(), directory, card="Random stand-in weights for reliability runs.\n"
    )
    return directory
