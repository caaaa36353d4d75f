"""WGSL kernel files: finding them, reading their declarations, compiling them.

Each file in ``shaders/`` is one kernel family. Its ``@group(0) @binding(n)``
declarations give the bind group layout shared by its entry points (binding 0
is always ``params``, a uniform struct read at a dynamic offset), and its
``struct Params`` gives the fields a dispatch packs, in order. Nothing about a
kernel is written down twice.

Header lines extend that: ``// extends: other.wgsl`` compiles the file
after that one's source (its declarations and helpers, since WGSL has no
includes; the entry points are this file's own); ``// includes: lib.wgsl``
compiles it after a library, a file marked ``// library`` that holds
functions only (no bindings, no Params, no entry points: it is no kernel
file of its own, and each file that names it gets it once); and
``// requires: feature`` compiles it only on a device with that wgpu feature.

Every file is compiled after a short generated preamble (:func:`preamble`):
the activation kinds as constants numbered by ``base.ACTIVATIONS``, the one
list both Python and WGSL take them from, and ``unknown_kind()``, the NaN a
``switch`` returns for a kind it does not know (never another activation).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import wgpu

_BINDING = re.compile(
    r"@group\(0\)\s*@binding\((\d+)\)\s*var<(uniform|storage)(?:,\s*(read|read_write))?>\s*(\w+)\s*:"
)
_PARAMS = re.compile(r"struct\s+Params\s*\{(.*?)\}", re.S)
_FIELD = re.compile(r"(\w+)\s*:\s*(u32|i32|f32)")
_ENTRY = re.compile(r"@compute\s*@workgroup_size\(([^)]*)\)\s*(?://[^\n]*\s*)*fn\s+(\w+)")
_FORMAT = {"u32": "I", "i32": "i", "f32": "f"}
_EXTENDS = re.compile(r"^//\s*extends:\s*(\S+\.wgsl)\s*$", re.M)
_REQUIRES = re.compile(r"^//\s*requires:\s*(\S+)\s*$", re.M)
_INCLUDES = re.compile(r"^//\s*includes:\s*(\S+\.wgsl)", re.M)
_LIBRARY = re.compile(r"^//\s*library\s*$", re.M)


def preamble() -> str:
    """The WGSL every kernel file is compiled after: constants that Python defines."""
    from .base import ACTIVATIONS

    lines = ["// generated from intricate_py/backends/base.py (shaders.preamble)"]
    lines += [f"const ACTIVATION_{kind.upper()}: u32 = {i}u;" for i, kind in enumerate(ACTIVATIONS)]
    lines.append("fn unknown_kind() -> f32 { return bitcast<f32>(0x7fc00000u); }  // NaN")
    return "\n".join(lines) + "\n"


def shader_dir() -> Path:
    """The folder of .wgsl files: inside the installed package (a wheel), or
    at the top of the source tree (an editable install or a checkout)."""
    here = Path(__file__).resolve().parent.parent  # intricate_py/
    for candidate in (here / "shaders", here.parent / "shaders"):
        if (candidate / "matmul.wgsl").is_file():
            return candidate
    raise FileNotFoundError(
        f"no WGSL shaders found in {here / 'shaders'} or {here.parent / 'shaders'}: "
        "reinstall intricate-py"
    )


@dataclass
class KernelFile:
    """One parsed .wgsl file."""

    name: str
    source: str
    #: (binding index, "uniform" | "read" | "read_write", variable name), in order
    bindings: list[tuple[int, str, str]]
    #: Params fields in order, and the struct that packs them
    fields: list[str]
    packer: struct.Struct
    #: entry point -> workgroup size (x, y, z)
    entries: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: the wgpu features a device needs for this file
    requires: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: Path) -> "KernelFile":
        return cls.parse(path.stem, path.read_text(encoding="utf-8"), path.parent, path)

    @classmethod
    def parse(cls, name: str, own: str, folder: Path, path: Path | None = None) -> "KernelFile":
        """The kernel file of source ``own`` named ``name``, whose header
        lines name files in ``folder`` (``path``: its own file, if any)."""
        path = path or folder / f"{name}.wgsl"
        files = [folder / base for base in _EXTENDS.findall(own)] + [path]
        texts = [f.read_text(encoding="utf-8") if f != path else own for f in files]
        libraries = list(dict.fromkeys(lib for text in texts for lib in _INCLUDES.findall(text)))
        parts = [preamble()] + [_library(folder / lib) for lib in libraries] + texts
        source = "\n".join(parts)
        bindings = [
            (int(i), "uniform" if space == "uniform" else access or "read", name)
            for i, space, access, name in _BINDING.findall(source)
        ]
        if not bindings or bindings[0][:2] != (0, "uniform"):
            raise ValueError(f"{path.name}: binding 0 must be the uniform params")
        params = _PARAMS.search(source)
        if params is None:
            raise ValueError(f"{path.name}: no struct Params")
        fields = _FIELD.findall(params.group(1))
        packer = struct.Struct("<" + "".join(_FORMAT[t] for _, t in fields))
        entries = {}
        for size, entry in _ENTRY.findall(own):
            dims = [int(s.strip().rstrip("u")) for s in size.split(",")]
            entries[entry] = tuple(dims + [1] * (3 - len(dims)))
        return cls(name, source, bindings, [f for f, _ in fields], packer, entries,
                   tuple(_REQUIRES.findall(own)))


def is_library(path: Path) -> bool:
    """Whether the .wgsl file at ``path`` is a library (``// library``)."""
    return _LIBRARY.search(path.read_text(encoding="utf-8")) is not None


def _library(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if not _LIBRARY.search(text):
        raise ValueError(f"{path.name} is included but not marked '// library'")
    return text


class Kernels:
    """Every kernel file compiled for one device (those it has the features
    for): a bind group layout per file and a pipeline per entry point, made once."""

    def __init__(self, device: "wgpu.GPUDevice", folder: Path | None = None):
        self.device = device
        self.files: dict[str, KernelFile] = {}
        self.layouts: dict[str, object] = {}
        self.modules: dict[str, object] = {}
        self.pipelines: dict[str, object] = {}
        self.entry_file: dict[str, KernelFile] = {}
        #: the WGSL entry point of each key of entry_file that is not one (a custom kernel's "name/entry")
        self.entry_point: dict[str, str] = {}
        for path in sorted((folder or shader_dir()).glob("*.wgsl")):
            if is_library(path):
                continue
            kernel = KernelFile.read(path)
            if not set(kernel.requires) <= set(device.features):
                continue
            self.files[kernel.name] = kernel
            for entry in kernel.entries:
                self.entry_file[entry] = kernel

    def _layout(self, kernel: KernelFile):
        if kernel.name not in self.layouts:
            types = {"uniform": "uniform", "read": "read-only-storage", "read_write": "storage"}
            entries = []
            for index, access, _ in kernel.bindings:
                buffer = {"type": types[access]}
                if access == "uniform":
                    buffer.update(has_dynamic_offset=True, min_binding_size=kernel.packer.size)
                entries.append({"binding": index, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": buffer})
            self.layouts[kernel.name] = self.device.create_bind_group_layout(entries=entries)
        return self.layouts[kernel.name]

    def pipeline(self, entry: str):
        """The compute pipeline of ``entry`` (compiled on first use)."""
        pipeline = self.pipelines.get(entry)
        if pipeline is None:
            kernel = self.entry_file[entry]
            module = self.modules.get(kernel.name)
            if module is None:
                module = self.modules[kernel.name] = self.device.create_shader_module(
                    label=kernel.name, code=kernel.source
                )
            layout = self.device.create_pipeline_layout(bind_group_layouts=[self._layout(kernel)])
            point = self.entry_point.get(entry, entry)
            pipeline = self.pipelines[entry] = self.device.create_compute_pipeline(
                label=entry, layout=layout, compute={"module": module, "entry_point": point}
            )
        return pipeline

    def add(self, kernel: KernelFile) -> None:
        """Add a kernel file made elsewhere (a custom kernel's, named so that
        no file of shaders/ has its name): its entry points are keyed
        ``"{kernel.name}/{entry}"``; each is compiled now, so that WGSL
        errors show at once."""
        keys = [f"{kernel.name}/{entry}" for entry in kernel.entries]
        for key, entry in zip(keys, kernel.entries):
            self.entry_file[key], self.entry_point[key] = kernel, entry
        try:
            for key in keys:
                self.pipeline(key)
        except BaseException:
            self.remove(kernel.name)  # a failed compilation leaves nothing behind
            raise

    def remove(self, name: str) -> None:
        """Forget a file added with :meth:`add`: its entry points, pipelines,
        module and layout (what a recording holds it keeps)."""
        for key in [k for k, file in self.entry_file.items() if file.name == name and "/" in k]:
            self.entry_file.pop(key, None)
            self.entry_point.pop(key, None)
            self.pipelines.pop(key, None)
        self.modules.pop(name, None)
        self.layouts.pop(name, None)

    def layout(self, entry: str):
        return self._layout(self.entry_file[entry])
