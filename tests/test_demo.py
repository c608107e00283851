"""A shrunken `fasd demo` end to end: every stage runs for real at tiny sizes, and a re-run reuses them."""

from __future__ import annotations

import json

from fasd.demo import DemoBudget, run_demo

TINY = DemoBudget(frames=72, size=64, teacher_epochs=1, student_epochs=1, max_draws=32, batch_size=16,
                  bench_runs=20)


def test_shrunken_demo_end_to_end(tmp_path):
    messages: list[str] = []
    summary = run_demo(tmp_path / "demo", TINY, progress=False, log=messages.append)
    out = tmp_path / "demo"
    for name in ("summary.json", "report.md", "acer.png", "roc.png", "student.onnx", "teacher.pt"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert set(on_disk) >= {"teacher", "distilled", "no_teacher", "onnx"}
    for key in ("teacher", "distilled", "no_teacher"):
        assert 0.0 <= on_disk[key]["at_eer"]["acer"] <= 1.0
    distilled = json.loads((out / "runs" / "distilled" / "metrics.json").read_text())
    assert on_disk["distilled"]["eer"] == distilled["eer"] and not distilled["no_teacher"]
    assert json.loads((out / "runs" / "no_teacher" / "metrics.json").read_text())["no_teacher"]
    assert on_disk["onnx"]["bytes"] == (out / "student.onnx").stat().st_size and on_disk["onnx"]["median_ms"] > 0
    assert (out / "acer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["distilled"]["eer"] == on_disk["distilled"]["eer"]

    # A second run reuses every finished stage: no re-training, no re-export.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "teacher.pt", out / "student.onnx",
                                                out / "runs" / "distilled" / "best.pt")}
    messages.clear()
    run_demo(out, TINY, progress=False, log=messages.append)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not any("teacher-finetune" in m or "export" in m for m in messages)
