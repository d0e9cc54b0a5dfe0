"""Checking an API-format prompt before anything runs, with the rules ComfyUI applies at ``POST /prompt``.

Every node type must be known; required inputs present; links must point at an existing node's existing output
of a compatible type; literal widget values must convert to their declared type (INT, FLOAT, STRING, BOOLEAN),
respect ``min``/``max``, and be one of the choices of a list combo; a node's own ``VALIDATE_INPUTS`` must accept
them. Problems are collected (not raised one at a time), so a user sees everything wrong at once.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Mapping

from synctalk_lib.errors import InputError
from synctalk_lib.workflow.specs import (InputSpec, coerce, input_specs, is_output_node, return_names,
                                         return_types, types_compatible)

# A few well-known ComfyUI core node ids, to tell "core node without a headless stand-in" from "another pack".
_CORE_NODE_HINTS = frozenset({
    "KSampler", "KSamplerAdvanced", "CheckpointLoaderSimple", "CLIPTextEncode", "VAEDecode", "VAEEncode",
    "EmptyLatentImage", "LoadImage", "LoadImageMask", "ImageScale", "ImageScaleBy", "ImageBatch", "ImageInvert",
    "ImageToMask", "MaskToImage", "SolidMask", "UpscaleModelLoader", "LoraLoader", "ControlNetLoader",
    "ControlNetApplyAdvanced", "LoadVideo", "SaveWEBM", "SaveAnimatedWEBP", "SaveAnimatedPNG", "PreviewAudio",
    "SaveAudioMP3", "SaveAudioOpus", "AudioConcat", "TrimAudioDuration", "EmptyImage", "ImageCrop",
    "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveBoolean", "StringConcatenate",
})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a prompt.

    Attributes:
        node_id: the node's id in the prompt ("" for whole-prompt problems).
        class_type: its node type.
        kind: a machine-readable reason, named like ComfyUI's error types (``required_input_missing``,
            ``return_type_mismatch``, ``value_not_in_list``, ``unknown_node_type``, ...).
        message: what is wrong and what to do, for people.
        input_name: the input concerned, if any.
        title: the node's title in the editor, if known.
    """

    node_id: str
    class_type: str
    kind: str
    message: str
    input_name: str | None = None
    title: str | None = None

    def __str__(self) -> str:
        if not self.node_id:
            return self.message
        label = f"node {self.node_id} ({self.class_type}"
        if self.title and self.title != self.class_type:
            label += f" '{self.title}'"
        label += ")"
        if self.input_name:
            label += f", input '{self.input_name}'"
        return f"{label}: {self.message}"


def is_link(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], int) \
        and not isinstance(value[1], bool) and isinstance(value[0], (str, int))


def output_nodes(prompt: Mapping[str, Mapping], registry: Mapping[str, type]) -> list[str]:
    """Ids of the prompt's output nodes (``OUTPUT_NODE = True``), in id order."""
    return [nid for nid, node in prompt.items()
            if node.get("class_type") in registry and is_output_node(registry[node["class_type"]])]


def reachable(prompt: Mapping[str, Mapping], roots: list[str]) -> set[str]:
    """The nodes ``roots`` depend on, including themselves."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node_id = stack.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen.add(node_id)
        stack.extend(str(v[0]) for v in (prompt[node_id].get("inputs") or {}).values() if is_link(v))
    return seen


def unknown_type_message(class_type: str, registry: Mapping[str, type]) -> str:
    """Why a node type is unknown and what to do, with close matches."""
    close = difflib.get_close_matches(class_type, list(registry), n=3, cutoff=0.75)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    if "synctalk" in class_type.lower():
        return (f"unknown node type '{class_type}': it is named like a SyncTalk node but this version of the pack "
                f"does not have it (renamed, or the workflow needs a newer version of the pack).{hint}")
    if class_type in _CORE_NODE_HINTS:
        return (f"unknown node type '{class_type}': it is a ComfyUI core node that the headless runner has no "
                f"stand-in for; run this workflow inside ComfyUI.{hint}")
    return (f"unknown node type '{class_type}': it is neither a node of this pack nor a core node the headless "
            "runner provides; it probably comes from another custom-node pack. Install that pack (ComfyUI-Manager: "
            f"'Install Missing Custom Nodes') and run the workflow inside ComfyUI.{hint}")


def validate(prompt: Mapping[str, Mapping], registry: Mapping[str, type], *, check_files: bool = True,
             only: set[str] | None = None) -> list[Problem]:
    """Every problem of an API-format prompt, ``[]`` when it can run.

    Args:
        prompt: ``{"<id>": {"class_type", "inputs", "_meta"?}}``.
        registry: node type id -> node class.
        check_files: also check input files: membership of upload combos (files in the input folder) and the
            ``VALIDATE_INPUTS`` of nodes that have one. Off for checking a workflow's structure on a machine
            that does not have its media.
        only: validate just these node ids (the runner passes the output nodes and their ancestors, as ComfyUI
            does); default: every node.
    """
    problems: list[Problem] = []
    if not isinstance(prompt, Mapping) or not prompt:
        return [Problem("", "", "invalid_prompt", "the workflow has no nodes")]
    for node_id in sorted(prompt, key=lambda k: (len(str(k)), str(k))):
        if only is not None and node_id not in only:
            continue
        problems.extend(_validate_node(str(node_id), prompt, registry, check_files))
    if not output_nodes(prompt, registry) and not any(p.kind == "unknown_node_type" for p in problems):
        problems.append(Problem("", "", "prompt_no_outputs",
                                "the workflow has no output node (such as SaveVideo, SaveImage or PreviewImage), "
                                "so nothing would run"))
    return problems


def _validate_node(node_id: str, prompt: Mapping[str, Mapping], registry: Mapping[str, type],
                   check_files: bool) -> list[Problem]:
    node = prompt[node_id]
    class_type = node.get("class_type") if isinstance(node, Mapping) else None
    title = ((node.get("_meta") or {}).get("title") if isinstance(node, Mapping) else None) or None
    if not class_type:
        return [Problem(node_id, "?", "invalid_prompt", "the node has no class_type")]

    def problem(kind: str, message: str, name: str | None = None) -> Problem:
        return Problem(node_id, class_type, kind, message, name, title)

    cls = registry.get(class_type)
    if cls is None:
        return [problem("unknown_node_type", unknown_type_message(class_type, registry))]
    try:
        specs = input_specs(cls, class_type)
    except InputError as exc:
        return [problem("invalid_node_definition", str(exc))]
    inputs = node.get("inputs") or {}
    custom_names, custom_kwargs = _validate_inputs_signature(cls)
    problems: list[Problem] = []
    for spec in specs:
        if spec.name not in inputs:
            if spec.category == "required":
                problems.append(problem("required_input_missing",
                                        f"required input ({spec.type_name}) is missing: connect it or give it a "
                                        "value", spec.name))
            continue
        value = inputs[spec.name]
        if isinstance(value, (list, tuple)):
            problems.extend(_check_link(spec, value, prompt, registry, problem, skip_types="input_types" in custom_names))
        else:
            skip_ranges = spec.name in custom_names or custom_kwargs
            problems.extend(_check_literal(spec, value, problem, check_files, skip_ranges))
    if check_files and (custom_names or custom_kwargs) and not problems:
        problems.extend(_run_validate_inputs(cls, specs, inputs, custom_names, custom_kwargs, problem))
    return problems


def _check_link(spec: InputSpec, value: Any, prompt, registry, problem, *, skip_types: bool) -> list[Problem]:
    if not is_link(value):
        return [problem("bad_linked_input", f"a link must be [node_id, output_index], got {value!r}", spec.name)]
    source_id, slot = str(value[0]), int(value[1])
    source = prompt.get(source_id)
    if source is None:
        return [problem("link_source_missing", f"linked to node {source_id}, which is not in the workflow",
                        spec.name)]
    source_cls = registry.get(source.get("class_type"))
    if source_cls is None:  # reported on the source node itself
        return []
    outputs = return_types(source_cls)
    if not 0 <= slot < len(outputs):
        return [problem("link_slot_invalid", f"linked to output {slot} of node {source_id} "
                        f"({source['class_type']}), which has {len(outputs)} output(s)", spec.name)]
    received = outputs[slot]
    expected = spec.type if not spec.is_list_combo else list(spec.type)
    if skip_types or types_compatible(received, expected):
        return []
    name = return_names(source_cls)[slot]
    hint = ""
    if received == "*" or expected == "*":
        hint = " (a plain '*' type is not a wildcard in ComfyUI's backend)"
    return [problem("return_type_mismatch", f"expects {spec.type_name} but is linked to output {slot} '{name}' "
                    f"({received}) of node {source_id} ({source['class_type']}){hint}", spec.name)]


def _check_literal(spec: InputSpec, value: Any, problem, check_files: bool, skip_ranges: bool) -> list[Problem]:
    if not spec.is_list_combo and spec.type not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
        return [problem("invalid_input_type", f"expects a link from a {spec.type_name} output, got the value "
                        f"{_short(value)}", spec.name)]
    try:
        value = coerce(spec, value)
    except (TypeError, ValueError) as exc:
        return [problem("invalid_input_type", f"{_short(value)} is not a valid {spec.type_name} ({exc})", spec.name)]
    if skip_ranges:
        return []
    if "min" in spec.options and isinstance(value, (int, float)) and value < spec.options["min"]:
        return [problem("value_smaller_than_min", f"{value} is smaller than the minimum {spec.options['min']}",
                        spec.name)]
    if "max" in spec.options and isinstance(value, (int, float)) and value > spec.options["max"]:
        return [problem("value_bigger_than_max", f"{value} is bigger than the maximum {spec.options['max']}",
                        spec.name)]
    if spec.is_list_combo and value not in spec.type and (check_files or not spec.upload):
        choices = list(spec.type)
        listed = ", ".join(repr(c) for c in choices[:20]) + (f", ... ({len(choices)} in all)" if len(choices) > 20
                                                             else "")
        where = " (files of that kind in the input folder)" if spec.upload else ""
        if not choices:
            listed = "nothing: the list is empty"
        return [problem("value_not_in_list", f"{_short(value)} is not one of the choices{where}: {listed}",
                        spec.name)]
    return []


def _validate_inputs_signature(cls: type) -> tuple[set[str], bool]:
    func = getattr(cls, "VALIDATE_INPUTS", None)
    if func is None:
        return set(), False
    try:
        spec = inspect.getfullargspec(func)
    except TypeError:
        return set(), False
    return set(spec.args) - {"cls", "s", "self"}, spec.varkw is not None


def _run_validate_inputs(cls, specs, inputs, names, has_kwargs, problem) -> list[Problem]:
    """Call ``VALIDATE_INPUTS`` with the literal inputs it asks for (linked ones as None, like ComfyUI)."""
    by_name = {s.name: s for s in specs}
    kwargs = {}
    for name, value in inputs.items():
        if name not in by_name or not (has_kwargs or name in names):
            continue
        kwargs[name] = None if is_link(value) else coerce(by_name[name], value)
    if "input_types" in names:
        kwargs["input_types"] = {}
    if getattr(cls, "INPUT_IS_LIST", False):
        kwargs = {k: [v] for k, v in kwargs.items()}
    try:
        result = cls.VALIDATE_INPUTS(**kwargs)
    except Exception as exc:  # a crash in validation is reported, not raised
        return [problem("exception_during_validation", f"VALIDATE_INPUTS raised {type(exc).__name__}: {exc}")]
    if result is True:
        return []
    return [problem("custom_validation_failed", str(result) if result is not False else "the node rejected its inputs")]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
