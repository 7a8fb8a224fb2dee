"""The Gradio page: load a video or a toy case, edit its first frame, pick the task and sampling
options, run with a per-step progress bar, watch and download the result.

Every handler turns a bad input into a message in the page (a ``gr.Warning`` toast and the
Messages box), never a traceback. Runs go through Gradio's queue one at a time
(``default_concurrency_limit=1``); the light handlers (loading, suggestions) are not limited.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from contracts.tasks import TASKS
from genprop.inference.video_io import write_video
from genprop_app.edits import (
    REMOVE_COLOUR,
    TRACK_COLOUR,
    EditError,
    compose_editor,
    extend_canvas,
    fit_edit,
    paste_region,
    suggest_task,
)
from genprop_app.runner import ModelRunner, RunCancelledError, SamplingChoice, write_run
from genprop_app.uploads import (
    VIDEO_SUFFIXES,
    ZIP_SUFFIX,
    Limits,
    LoadedVideo,
    UploadError,
    list_toy_cases,
    load_edited_frame,
    load_toy_case,
    load_video_upload,
)

log = logging.getLogger(__name__)

INTRO = """# GenProp — propagate a first-frame edit
Load a video (or a toy benchmark case), edit its first frame, pick the task and run. Brush
colours: **magenta** removes what it covers (filled by inpainting), **red** marks a region to
track, any other colour is an edit. Or upload an edited first frame made elsewhere (it takes
precedence over the editor), paste a region (insertion) or extend the canvas (outpainting)."""


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass
class PageConfig:
    """What the page serves: the model, the toy cases folder, the upload limits, a work folder
    for the videos it writes."""

    runner: ModelRunner
    work_dir: Path
    cases_root: Path | None = None
    limits: Limits = field(default_factory=Limits)


def _problem(message: str) -> str:
    gr.Warning(message)
    return f"Error: {message}"


def _editor_value(frame: np.ndarray) -> dict[str, Any]:
    return {"background": frame, "layers": [], "composite": frame}


def _new_dir(root: Path) -> Path:
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def build_page(cfg: PageConfig) -> gr.Blocks:
    """The page's ``gr.Blocks``, its queue set to one run at a time."""
    runner, limits = cfg.runner, cfg.limits
    cases = {ref.id: ref for ref in list_toy_cases(cfg.cases_root)}
    first_task = "edit"
    defaults = runner.defaults(first_task)

    def show_video(video: LoadedVideo) -> str:
        return str(write_video(_new_dir(cfg.work_dir) / "input.mp4", video.frames, video.fps))

    def loaded(video: LoadedVideo, note: str) -> str:
        T, H, W = video.frames.shape[:3]
        return f"Loaded {note}: {T} frames of {W}x{H} at {video.fps:g} fps."

    def on_video(path: str | None):
        if path is None:
            return (gr.skip(),) * 8
        try:
            video = load_video_upload(path, limits)
        except UploadError as e:  # the refused file is cleared, the loaded video kept
            return (None, *(gr.skip(),) * 6, _problem(str(e)))
        frame0 = video.frames[0]
        return (
            gr.skip(),
            video,
            None,
            False,
            show_video(video),
            _editor_value(frame0),
            None,
            loaded(video, video.name),
        )

    def on_case(case_id: str | None):
        if not case_id or case_id not in cases:
            return (gr.skip(),) * 8
        try:
            case = load_toy_case(cases[case_id], limits)
        except UploadError as e:
            return (*(gr.skip(),) * 7, _problem(str(e)))
        edited = _new_dir(cfg.work_dir) / f"{case.id}_first_frame.png"
        Image.fromarray(case.first).save(edited)
        return (
            case.video,
            (str(edited), case.task),
            show_video(case.video),
            _editor_value(case.video.frames[0]),
            str(edited),
            case.task,
            case.prompt,
            loaded(case.video, f"case {case.id} ({case.task})"),
        )

    def edited_frame(
        video: LoadedVideo, editor: dict | None, upload: str | None
    ) -> tuple[np.ndarray, Any]:
        if upload:
            return load_edited_frame(upload, video.frames.shape[1:3], limits), None
        composed = compose_editor(editor)
        return composed.frame, composed

    def on_edit(
        video: LoadedVideo | None,
        editor: dict | None,
        upload: str | None,
        pasted: bool,
        case: tuple[str, str] | None,
    ):
        if video is None:
            return gr.skip(), ""
        if upload and case is not None and Path(upload).name == Path(case[0]).name:
            return case[1], f"Task: **{case[1]}** (the toy case's task)."
        try:
            frame, composed = edited_frame(video, editor, upload)
        except (UploadError, EditError) as e:
            return gr.skip(), _problem(str(e))
        hint = suggest_task(video.frames[0], frame, composed=composed, pasted=pasted)
        return hint.task, f"Suggested task: **{hint.task}** ({hint.reason})."

    def on_upload_edit(video: LoadedVideo | None, upload: str | None):
        if upload is None or video is None:
            return gr.skip(), gr.skip()
        try:
            load_edited_frame(upload, video.frames.shape[1:3], limits)
        except UploadError as e:
            return None, _problem(str(e))
        return gr.skip(), "Using the uploaded edited frame (clear it to use the editor)."

    def on_paste(editor: dict | None, patch: np.ndarray | None, x: float, y: float):
        try:
            if patch is None:
                raise EditError("choose an image to paste first")
            frame = compose_editor(editor).frame
            out = paste_region(frame, patch, int(x or 0), int(y or 0))
        except EditError as e:
            return gr.skip(), gr.skip(), _problem(str(e))
        return _editor_value(out), True, "Pasted the region; the task suggested is insertion."

    def on_extend(editor: dict | None, pixels: float):
        try:
            out = extend_canvas(compose_editor(editor).frame, int(pixels or 0))
        except EditError as e:
            return gr.skip(), _problem(str(e))
        H, W = out.shape[:2]
        return _editor_value(out), f"The canvas is now {W}x{H}; paint the new border, then run."

    def on_task(task: str):
        d = runner.defaults(task)
        return d["guidance"], d["mask_threshold"]

    def on_run(
        video: LoadedVideo | None,
        editor: dict | None,
        upload: str | None,
        task: str,
        prompt: str,
        steps: float | None,
        guidance: float | None,
        injection_weight: float | None,
        mask_threshold: float | None,
        seed: float | None,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's way to ask for a bar
    ):
        none = (gr.skip(), gr.skip(), gr.skip())
        if video is None:
            return (*none, _problem("load a video or pick a toy case first"))
        try:
            frame, _ = edited_frame(video, editor, upload)
            frames, extended = fit_edit(video.frames, frame)
            choice = SamplingChoice(
                steps=None if steps is None else int(steps),
                guidance=guidance,
                injection_weight=injection_weight,
                mask_threshold=mask_threshold,
                seed=int(seed or 0),
                prompt=prompt or None,
            )
            progress((0, None), desc="starting")

            def on_step(done: int, total: int) -> None:
                progress((done, total), desc="denoising", unit="steps")

            session = request.session_hash if request is not None else ""
            result = runner.run(frames, frame, task, choice, session=session, on_step=on_step)
        except RunCancelledError:
            return (*none, "Cancelled.")
        except (UploadError, EditError, ValueError) as e:
            return (*none, _problem(str(e)))
        out = write_run(_new_dir(cfg.work_dir), result, video.fps, frames)
        note = " (canvas extended: the video was padded with black)" if extended else ""
        T, H, W = result.video.shape[:3]
        return (
            str(out.video),
            str(out.comparison),
            [str(out.video), str(out.masks_zip)],
            f"Done: {T} frames of {W}x{H}, task {task}{note}.",
        )

    def on_cancel(request: gr.Request):
        running = runner.cancel(request.session_hash if request is not None else "")
        return "Cancelling at the next step..." if running else "Nothing is running."

    with gr.Blocks(title="GenProp", analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        video_state = gr.State(None)
        pasted_state = gr.State(False)
        case_state = gr.State(None)  # (edited first frame path, task) of the picked toy case
        with gr.Row():
            with gr.Column():
                video_file = gr.File(
                    label="Input video (mp4, webm, mov) or a zip of PNG/JPG frames",
                    file_types=[*VIDEO_SUFFIXES, ZIP_SUFFIX],
                    type="filepath",
                    elem_id="video-upload",
                )
                case_pick = gr.Dropdown(
                    choices=list(cases),
                    value=None,
                    label="...or a toy benchmark case",
                    visible=bool(cases),
                    elem_id="case-pick",
                )
                input_video = gr.Video(label="Input", interactive=False, elem_id="input-video")
            with gr.Column():
                editor = gr.ImageEditor(
                    label="Edit the first frame",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    sources=(),
                    brush=gr.Brush(
                        colors=[_hex(REMOVE_COLOUR), _hex(TRACK_COLOUR), "#00c000", "#0060ff"],
                        color_mode="defaults",
                    ),
                    elem_id="editor",
                )
                with gr.Accordion(
                    "Upload an edited first frame made elsewhere", open=False, elem_id="edited-acc"
                ):
                    edited_upload = gr.Image(
                        label="Edited first frame (same size as the video, or larger to "
                        "extend the canvas)",
                        type="filepath",
                        sources=["upload"],
                        height=200,
                        elem_id="edited-upload",
                    )
                with gr.Accordion("Paste a region (insertion)", open=False):
                    patch = gr.Image(
                        label="Region (RGBA cut-outs keep their shape)",
                        type="numpy",
                        image_mode="RGBA",
                        sources=["upload"],
                    )
                    with gr.Row():
                        paste_x = gr.Number(0, label="x", precision=0)
                        paste_y = gr.Number(0, label="y", precision=0)
                    paste_btn = gr.Button("Paste onto the first frame")
                with gr.Accordion("Extend the canvas (outpainting)", open=False):
                    extend_px = gr.Number(16, label="pixels on each side", precision=0, minimum=1)
                    extend_btn = gr.Button("Extend")
        with gr.Row():
            task = gr.Radio(list(TASKS), value=first_task, label="Task", elem_id="task")
            why = gr.Markdown(elem_id="why")
        with gr.Accordion("Sampling (the model's defaults)", open=False):
            prompt = gr.Textbox(label="Prompt (optional)", elem_id="prompt")
            with gr.Row():
                steps = gr.Number(defaults["steps"], label="steps", precision=0, minimum=1)
                guidance = gr.Number(defaults["guidance"], label="guidance (1 = off)")
                injection = gr.Slider(
                    0.0, 1.0, value=defaults["injection_weight"], label="injection weight"
                )
                threshold = gr.Slider(
                    0.01, 0.99, value=defaults["mask_threshold"], label="mask threshold"
                )
                seed = gr.Number(0, label="seed", precision=0)
        with gr.Row():
            run_btn = gr.Button("Run", variant="primary", elem_id="run")
            cancel_btn = gr.Button("Cancel", elem_id="cancel")
        message = gr.Textbox(label="Messages", interactive=False, elem_id="message")
        with gr.Row():
            comparison = gr.Video(
                label="Input | result | predicted mask", interactive=False, elem_id="comparison"
            )
            result_video = gr.Video(label="Result", interactive=False, elem_id="result-video")
        downloads = gr.File(
            label="Downloads: result.mp4, masks.zip (PNG probabilities)",
            file_count="multiple",
            interactive=False,
            elem_id="downloads",
        )

        light = {"concurrency_limit": None, "show_progress": "hidden"}
        video_file.upload(
            on_video,
            [video_file],
            [
                video_file,
                video_state,
                case_state,
                pasted_state,
                input_video,
                editor,
                edited_upload,
                message,
            ],
            **light,
        )
        case_pick.change(
            on_case,
            [case_pick],
            [video_state, case_state, input_video, editor, edited_upload, task, prompt, message],
            **light,
        )
        edited_upload.change(
            on_upload_edit, [video_state, edited_upload], [edited_upload, message], **light
        )
        for trigger in (editor.change, edited_upload.change):
            trigger(
                on_edit,
                [video_state, editor, edited_upload, pasted_state, case_state],
                [task, why],
                **light,
            )
        paste_btn.click(
            on_paste, [editor, patch, paste_x, paste_y], [editor, pasted_state, message], **light
        )
        extend_btn.click(on_extend, [editor, extend_px], [editor, message], **light)
        task.change(on_task, [task], [guidance, threshold], **light)
        run = run_btn.click(
            on_run,
            [
                video_state,
                editor,
                edited_upload,
                task,
                prompt,
                steps,
                guidance,
                injection,
                threshold,
                seed,
            ],
            [result_video, comparison, downloads, message],
            concurrency_limit=1,
            concurrency_id="model",
        )
        cancel_btn.click(on_cancel, None, [message], cancels=[run], queue=False)
    page.queue(default_concurrency_limit=1)
    return page
