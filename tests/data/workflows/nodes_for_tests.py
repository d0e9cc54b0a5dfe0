"""Node classes used by the workflow tests (V1 style, like the pack's), and helpers to write their inputs.

``gradient_frames`` is the reference for what ``TestGradientFrames`` outputs, so tests can check decoded videos
against known pixel values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

COLOURS = {"red": (1.0, 0.2, 0.1), "green": (0.1, 1.0, 0.2), "blue": (0.2, 0.1, 1.0)}


def gradient_frames(width: int, height: int, frames: int, colour: str, brightness: float) -> np.ndarray:
    """``[frames, height, width, 3]`` float32: a horizontal ramp in ``colour`` that brightens frame by frame."""
    ramp = np.linspace(0.2, 1.0, width, dtype=np.float32)[None, :, None] * np.asarray(COLOURS[colour], np.float32)
    steps = np.linspace(0.5, 1.0, frames, dtype=np.float32)[:, None, None, None]
    image = np.broadcast_to(ramp[None], (frames, height, width, 3)) * steps * brightness
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)


def write_tone(path: Path, seconds: float = 1.0, rate: int = 16000, frequency: float = 440.0) -> np.ndarray:
    """A sine tone as a 16-bit mono WAV; returns the float samples ``[1, T]`` written."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    wave = (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return wave


class TestGradientFrames:
    CALLS: list[dict] = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 64, "min": 8, "max": 512, "step": 2, "tooltip": "frame width"}),
            "height": ("INT", {"default": 48, "min": 8, "max": 512, "step": 2, "tooltip": "frame height"}),
            "frames": ("INT", {"default": 10, "min": 1, "max": 100, "tooltip": "number of frames"}),
            "colour": (["red", "green", "blue"], {"default": "red", "tooltip": "ramp colour"}),
            "brightness": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "gain"}),
        }}

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "mask")
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, width, height, frames, colour, brightness):
        TestGradientFrames.CALLS.append({"width": width, "frames": frames, "inference": torch.is_inference_mode_enabled()})
        images = torch.from_numpy(gradient_frames(width, height, frames, colour, brightness))
        return (images, images[..., 0] > 0.5)


class TestNoise:
    """Adds seeded noise; its ``seed`` INT gets the editor's control-after-generate companion widget."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
            "amount": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, image, seed, amount):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(image.shape, generator=generator) - 0.5
        return ((image + amount * noise).clamp(0, 1),)


class TestMaskedInvert:
    """Inverts the image where the mask is set; bypassing it must pass ``image`` (input 1) through, not ``mask``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",), "image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, mask, image):
        return (torch.where(mask[..., None], 1.0 - image, image),)


class TestSum:
    """An output node reporting the sum of its image (and of an optional second one) in its ``ui``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}, "optional": {"other": ("IMAGE",)},
                "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, image, unique_id=None, prompt=None, **optional):
        total = float(image.sum()) + (float(optional["other"].sum()) if "other" in optional else 0.0)
        return {"ui": {"text": [f"{unique_id}:{total:.3f}:{'other' in optional}:{len(prompt)}"]}, "result": (total,)}


class TestFail:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, image):
        raise ZeroDivisionError("the test node always fails")


class TestSplit:
    """Fans a batch out into a list of single frames (OUTPUT_IS_LIST)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, images):
        return ([images[i:i + 1] for i in range(images.shape[0])],)


class TestBrightness:
    """Mean brightness of one image; called once per list element."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, image):
        return (float(image.mean()),)


class TestCollect:
    """Receives whole lists (INPUT_IS_LIST) and reports them."""

    INPUT_IS_LIST = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("FLOAT", {"forceInput": True})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    def run(self, values):
        return {"ui": {"values": [round(v, 6) for v in values]}}


class TestAnyOut:
    """Declares a plain "*" output, which ComfyUI's backend does not treat as a wildcard."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"flag": ("BOOLEAN", {"default": True})}}

    RETURN_TYPES = ("*", "IMAGE,MASK")
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, flag):
        return (None, None)


class TestChecked:
    """Has a VALIDATE_INPUTS classmethod that rejects odd numbers (and so skips the built-in range check)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "number": ("INT", {"default": 2, "min": 0, "max": 10})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def VALIDATE_INPUTS(cls, number, image=None):
        assert image is None  # linked inputs arrive as None, like in ComfyUI
        return True if number % 2 == 0 else f"number must be even, got {number}"

    def run(self, image, number):
        return (image,)


TEST_NODES = {cls.__name__: cls for cls in (TestGradientFrames, TestNoise, TestMaskedInvert, TestSum, TestFail,
                                             TestSplit, TestBrightness, TestCollect, TestAnyOut, TestChecked)}

for _cls in TEST_NODES.values():
    _cls.__test__ = False  # named Test*, but not pytest test classes


def registry_with_test_nodes():
    """The core stand-ins plus the test nodes above: what the workflow tests run graphs with."""
    from synctalk_lib.workflow import Registry, core_nodes

    registry = Registry()
    registry.add(core_nodes.NODE_CLASS_MAPPINGS, core_nodes.NODE_DISPLAY_NAME_MAPPINGS, "core stand-in")
    registry.add(TEST_NODES, {}, "test")
    return registry
