"""Reading a node class's declared inputs and outputs (``INPUT_TYPES``, ``RETURN_TYPES``) the way ComfyUI does.

Shared by the format converter (which inputs are widgets, and in which order their values are saved), the
validator (types, ranges, combos) and the runner (coercing literal values, hidden inputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from synctalk_lib.errors import InputError

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload")
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
SEED_NAMES = frozenset({"seed", "noise_seed"})


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a node class.

    Attributes:
        name: the input's name (the keyword the node function receives).
        type: a type string (``"IMAGE"``, ``"INT"``, ...) or, for a legacy combo, the list of allowed values.
        options: the options dict (``default``, ``min``, ``max``, ``forceInput``, ``image_upload``, ...).
        category: ``"required"``, ``"optional"`` or ``"hidden"``.
    """

    name: str
    type: Any
    options: dict = field(default_factory=dict)
    category: str = "required"

    @property
    def is_list_combo(self) -> bool:
        return isinstance(self.type, (list, tuple))

    @property
    def type_name(self) -> str:
        """The type as written in messages (``COMBO`` for legacy list combos)."""
        return "COMBO" if self.is_list_combo else str(self.type)

    @property
    def is_widget(self) -> bool:
        """True when the editor shows a widget for it (and saves its value in ``widgets_values``)."""
        if self.category == "hidden" or self.options.get("forceInput"):
            return False
        return self.is_list_combo or (isinstance(self.type, str) and self.type in WIDGET_TYPES)

    @property
    def combo_values(self) -> list | None:
        """Allowed values of a combo (legacy list, or ``("COMBO", {"options": [...]})``), else None."""
        if self.is_list_combo:
            return list(self.type)
        if self.type == "COMBO" and isinstance(self.options.get("options"), (list, tuple)):
            return list(self.options["options"])
        return None

    @property
    def upload(self) -> str | None:
        """``"image"``/``"video"``/``"audio"`` for upload combos (files of the input folder), else None."""
        for key in UPLOAD_OPTIONS:
            if self.options.get(key):
                return key.split("_")[0]
        return None

    @property
    def has_control_widget(self) -> bool:
        """An INT the editor gives a "control after generate" companion widget (saved right after its value)."""
        return self.type == "INT" and (bool(self.options.get("control_after_generate")) or self.name in SEED_NAMES)

    def default(self) -> Any:
        """The value the editor would fill in for a widget with no saved value (``None`` if there is none)."""
        if "default" in self.options:
            return self.options["default"]
        values = self.combo_values
        return values[0] if values else None


def input_types(cls: type, class_type: str = "") -> dict:
    """``cls.INPUT_TYPES()`` with failures turned into a readable error."""
    try:
        declared = cls.INPUT_TYPES()
    except Exception as exc:  # a broken node definition should name the node, not crash somewhere deeper
        raise InputError(f"node type '{class_type or cls.__name__}': INPUT_TYPES() failed: {exc}") from exc
    if not isinstance(declared, Mapping):
        raise InputError(f"node type '{class_type or cls.__name__}': INPUT_TYPES() must return a dict")
    return dict(declared)


def input_specs(cls: type, class_type: str = "", *, hidden: bool = False) -> list[InputSpec]:
    """Declared inputs in the editor's order: required, then optional (then hidden when asked)."""
    declared = input_types(cls, class_type)
    categories = ("required", "optional", "hidden") if hidden else ("required", "optional")
    specs = []
    for category in categories:
        for name, entry in (declared.get(category) or {}).items():
            if category == "hidden":
                specs.append(InputSpec(name, entry, {}, category))
                continue
            if isinstance(entry, str):  # tolerate a bare type string
                entry = (entry,)
            type_ = entry[0] if len(entry) > 0 else None
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], Mapping) else {}
            specs.append(InputSpec(name, type_, dict(options), category))
    return specs


def return_types(cls: type) -> tuple:
    return tuple(getattr(cls, "RETURN_TYPES", ()) or ())


def return_names(cls: type) -> tuple:
    names = tuple(getattr(cls, "RETURN_NAMES", ()) or ())
    types = return_types(cls)
    return names if len(names) == len(types) else tuple(str(t) for t in types)


def is_output_node(cls: type) -> bool:
    return bool(getattr(cls, "OUTPUT_NODE", False))


def types_compatible(received: Any, expected: Any) -> bool:
    """Whether an output of type ``received`` may feed an input of type ``expected``, as ComfyUI's backend decides.

    Equal types match (compared with ``!=``, so ComfyUI's "any" type objects, whose ``__ne__`` accepts
    everything, keep working); comma-separated unions match when they share a member. A plain ``"*"`` string is
    not a wildcard in ComfyUI's backend (only in the editor), and is not here either.
    """
    if not received != expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def coerce(spec: InputSpec, value: Any) -> Any:
    """A literal input value converted to the declared type (as ComfyUI does at /prompt); raises ValueError."""
    if isinstance(value, dict) and "__value__" in value:  # ComfyUI's wrapper for literal lists
        return value["__value__"]
    kind = spec.type if isinstance(spec.type, str) else None
    if kind == "INT":
        if isinstance(value, bool):
            raise ValueError("a boolean is not an INT")
        return int(value)
    if kind == "FLOAT":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a FLOAT")
        return float(value)
    if kind == "STRING":
        return str(value)
    if kind == "BOOLEAN":
        # ComfyUI applies bool(), which turns the string "false" into True; refuse strings instead.
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        raise ValueError("use true or false (JSON booleans)")
    return value
