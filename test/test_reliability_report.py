"""The reliability reports on hand-built inputs: the checks `vla-accel soak` makes of its own run (its
exit code), and the faults section rendered from what the fault tests record."""

from __future__ import annotations


def test_a_soak_report_passes_only_at_the_configured_rate_with_flat_memory():
    """The soak benchmark's own checks (its exit code): rate >= 90 % of the configured one, RSS flat."""
    from vla_accel_ros.evaluation.soak import Endpoint, RunReport

    def report(control_hz: float, slope_mb: float) -> RunReport:
        r = RunReport(kind="soak", settings={"control_hz": 10.0}, sim_s=3600.0, wall_s=900.0)
        r.endpoints = [Endpoint("controller_node", "/arm/command", "publisher", "KEEP_LAST", 1, "reliable")]
        r.commands, r.control_hz = 100, control_hz
        r.rss = {"inference_node": [(t * 60.0, 400.0 + slope_mb * t / 60.0) for t in range(61)]}
        return r

    assert report(9.5, 0.0).passed()
    assert not report(8.8, 0.0).passed() and "**missed**" in report(8.8, 0.0).markdown()
    assert not report(9.5, 50.0).memory_flat() and not report(9.5, 50.0).passed()
    assert "Memory flat" in report(9.5, 0.0).markdown() and "**yes**" in report(9.5, 0.0).markdown()


def test_the_fault_measurements_render_into_their_own_section(tmp_path):
    """What the fault tests recorded (VLA_ACCEL_FAULT_REPORT) becomes the faults section; others stay."""
    import json

    from vla_accel_ros.evaluation.reliability import write_doc_section, write_faults_section

    doc = tmp_path / "RELIABILITY.md"
    write_doc_section(doc, "fuzz", "Bad data (fuzz)", "fuzz body\n")
    report = tmp_path / "faults.json"
    faults = [{"fault": "controller SIGKILL (twist)", "commands_after_kill": 0}]
    report.write_text(json.dumps({"watchdog_timeout_s": 0.5, "model": "builtin", "faults": faults}))
    write_faults_section(report, doc)
    text = doc.read_text()
    assert "fuzz body" in text and "| controller SIGKILL (twist) | commands after kill 0 |" in text
    assert "model: builtin" in text
