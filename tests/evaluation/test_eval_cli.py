"""``genprop-eval`` end to end on tiny synthetic case folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_cases import write_cases

from evaluation.cases import CaseError, list_cases, load_case
from evaluation.cli import main
from genprop import GenPropModel, preset
from genprop.inference.video_io import write_frames_dir, write_mask_dir, write_video


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    return write_cases(tmp_path / "cases", tasks=("removal", "insertion", "tracking"), T=4)


def _oracle_outputs(cases: Path, root: Path) -> Path:
    """A perfect method: the ground truth as output (mp4 lossless for one case), gt masks."""
    for ref in list_cases(cases):
        case = load_case(ref)
        if ref.task == "insertion":
            write_video(root / f"{ref.id}.mp4", case.gt, fps=8, codec="lossless")
        else:
            write_frames_dir(root / ref.id, case.gt)
        write_mask_dir(root / f"{ref.id}_masks", case.edit_mask)
    return root


def test_eval_writes_json_md_png_and_scores_make_sense(cases: Path, tmp_path: Path) -> None:
    oracle = _oracle_outputs(cases, tmp_path / "oracle")
    out = tmp_path / "report"
    assert main(["--cases", str(cases), "--method", f"oracle={oracle}", "--out", str(out)]) == 0
    data = json.loads((out / "metrics.json").read_text())
    avg = data["averages"]
    assert set(avg) == {"removal", "insertion", "tracking"}
    assert avg["removal"]["oracle"]["PSNR_edit"] == 100.0
    assert avg["removal"]["oracle"]["MPD_J_edit"] == 1.0
    assert avg["tracking"]["oracle"]["J_obj"] == 1.0
    assert avg["tracking"]["oracle"]["J_obj+fx"] < 1.0  # tracks the object, not its shadow
    # identity keeps the background exactly but not the removed object
    ident = avg["removal"]["identity"]
    assert ident["PSNR_m"] == 100.0 and ident["PSNR_edit"] < 40
    # mask_inpaint sees the object but not its shadow: better than identity inside the edit
    assert avg["removal"]["mask_inpaint"]["PSNR_edit"] > ident["PSNR_edit"]
    assert "mask_inpaint" in data["not_applicable"]["insertion"]
    assert any("CLIP" in n for n in data["notes"])
    md = (out / "metrics.md").read_text()
    assert "## removal" in md and "| oracle |" in md and "N/A" in md
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "baselines" / "flow_propagation" / "removal_000" / "00003.png").is_file()


def test_baselines_are_cached(cases: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    argv = ["--cases", str(cases), "--baselines", "identity", "--out", str(out)]
    assert main(argv) == 0
    cached = out / "baselines" / "identity" / "removal_000" / "00001.png"
    write_frames_dir(cached.parent, np.zeros((4, 32, 32, 3), np.uint8))  # tamper: must be reused
    assert main(argv) == 0
    psnr = json.loads((out / "metrics.json").read_text())["averages"]["removal"]["identity"]["PSNR"]
    assert psnr < 10


def test_bad_inputs_exit_2_or_are_reported(cases: Path, tmp_path: Path, capsys) -> None:
    assert main(["--cases", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "index.json" in capsys.readouterr().err
    assert main(["--cases", str(cases), "--baselines", "magic"]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["--cases", str(cases), "--method", "x=" + str(tmp_path / "nope")]) == 2
    # a method missing one case's output: reported, the other cases still scored
    partial = tmp_path / "partial"
    shutil.copytree(_oracle_outputs(cases, tmp_path / "o") / "removal_000", partial / "removal_000")
    out = tmp_path / "r2"
    argv = [
        "--cases",
        str(cases),
        "--method",
        f"p={partial}",
        "--baselines",
        "none",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert "removal" in data["averages"] and "tracking_000" in " ".join(data["errors"])


def test_case_loader_rejects_escaping_dir_and_size_mismatch(cases: Path) -> None:
    index = json.loads((cases / "index.json").read_text())
    index["cases"][0]["dir"] = "../elsewhere"
    (cases / "index.json").write_text(json.dumps(index))
    with pytest.raises(CaseError, match="escapes"):
        list_cases(cases)
    index["cases"][0]["dir"] = "removal_000"
    (cases / "index.json").write_text(json.dumps(index))
    write_frames_dir(cases / "removal_000" / "gt", np.zeros((4, 16, 16, 3), np.uint8))
    with pytest.raises(CaseError, match="gt"):
        load_case(list_cases(cases)[0])


def test_eval_runs_a_genprop_model(cases: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    out = tmp_path / "r"
    argv = [
        "--cases",
        str(cases),
        "--model",
        str(tmp_path / "model"),
        "--steps",
        "2",
        "--baselines",
        "none",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert (out / "genprop" / "removal_000" / "00003.png").is_file()
    assert (out / "genprop" / "tracking_000_masks" / "00003.png").is_file()
    avg = json.loads((out / "metrics.json").read_text())["averages"]
    assert "MPD_J_obj" in avg["tracking"]["genprop"] and "J_obj" in avg["tracking"]["genprop"]


def test_guidance_spec_parses_per_task_values_and_rejects_bad_ones() -> None:
    from evaluation.cli import parse_guidance, value_for
    from genprop.cli.propagate import UsageError

    g = parse_guidance("5, tracking=8,outpainting=3")
    assert g == {"*": 5.0, "tracking": 8.0, "outpainting": 3.0}
    assert value_for(g, "tracking") == 8.0 and value_for(g, "removal") == 5.0
    only = parse_guidance("tracking=8")
    assert value_for(only, "tracking") == 8.0 and value_for(only, "edit") is None
    assert parse_guidance(None) == {} and value_for({}, "edit") is None
    for bad, why in [
        ("5,tracking=8,6", "first entry"),
        ("5,trakcing=8", "unknown task 'trakcing'"),
        ("5,tracking=x", "not a number"),
        ("tracking=2,tracking=3", "twice"),
        ("0", "positive"),
    ]:
        with pytest.raises(UsageError, match=why):
            parse_guidance(bad)


def test_eval_samples_each_task_at_its_own_guidance(
    cases: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import evaluation.cli as ev

    seen: dict[str, float | None] = {}
    real = ev.run_propagation

    def spy(model, video, first, task, **kw):
        seen[task] = kw["guidance"]
        return real(model, video, first, task, **kw)

    monkeypatch.setattr(ev, "run_propagation", spy)
    torch.manual_seed(0)
    GenPropModel.from_config(preset("cpu_test")).save_pretrained(tmp_path / "model")
    base = ["--cases", str(cases), "--model", str(tmp_path / "model"), "--steps", "1"]
    argv = [*base, "--baselines", "none", "--out", str(tmp_path / "r")]
    assert main([*argv, "--guidance", "2,tracking=4"]) == 0
    assert seen == {"removal": 2.0, "insertion": 2.0, "tracking": 4.0}
    run = json.loads((tmp_path / "r" / "genprop" / "run.json").read_text())
    assert run["options"]["guidance"] == {"*": 2.0, "tracking": 4.0}
    assert main([*argv, "--guidance", "2,trakcing=4"]) == 2
    assert "unknown task 'trakcing'" in capsys.readouterr().err


def test_mpd_masks_are_scored_at_the_exports_threshold_per_task(
    cases: Path, tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    model = GenPropModel.from_config(preset("cpu_test"))
    model.config.sampling.task_mask_threshold = {"tracking": 0.3}  # 0.5 for the other tasks
    model.save_pretrained(tmp_path / "model")
    base = ["--cases", str(cases), "--model", str(tmp_path / "model"), "--steps", "1"]
    argv = [*base, "--baselines", "none", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    # Every saved MPD probability becomes 100/255 (0.39): above tracking's 0.3, below 0.5.
    for ref in list_cases(cases):
        write_mask_dir(
            tmp_path / "r" / "genprop" / f"{ref.id}_masks", np.full((4, 32, 32), 100, np.uint8)
        )

    def mpd_j(*extra: str) -> dict[str, float]:
        assert main([*argv, *extra]) == 0  # outputs reused: the threshold is not a new run
        data = json.loads((tmp_path / "r" / "metrics.json").read_text())
        avg = {t: data["averages"][t]["genprop"] for t in ("tracking", "removal")}
        return {"tracking": avg["tracking"]["MPD_J_obj"], "removal": avg["removal"]["MPD_J_edit"]}

    default = mpd_j()
    assert default["tracking"] > 0 and default["removal"] == 0.0
    notes = json.loads((tmp_path / "r" / "metrics.json").read_text())["notes"]
    assert any("0.3 (tracking)" in n and "0.5 (removal)" in n for n in notes)
    both = mpd_j("--mask-threshold", "0.35")
    assert both["tracking"] == default["tracking"] and both["removal"] > 0
    assert mpd_j("--mask-threshold", "0.35,tracking=0.45")["tracking"] == 0.0
    capsys.readouterr()
    assert main([*argv, "--mask-threshold", "1.2"]) == 2
    assert "--mask-threshold '1.2': expected a number in (0, 1)" in capsys.readouterr().err
