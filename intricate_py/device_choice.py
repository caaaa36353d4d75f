"""Which device a model runs on.

``device="auto"`` (the default, or ``INTRICATE_DEVICE``) takes a hardware GPU
adapter — discrete, then integrated — and otherwise the numpy backend. A
software adapter (llvmpipe/lavapipe, SwiftShader: adapter type "CPU") is
exact but slower than numpy, so it is used only when asked for with
``device="gpu"``. :func:`devices` lists what was found and says why.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass

ENV_VAR = "INTRICATE_DEVICE"
CHOICES = ("auto", "cpu", "gpu")

#: adapter types by preference; "auto" takes only the first two
_TYPE_RANK = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "Unknown": 3, "CPU": 4}
_HARDWARE = ("DiscreteGPU", "IntegratedGPU")
#: OpenGL adapters lack what the kernels need (and are found twice): skipped
_BACKEND_RANK = {"Vulkan": 0, "Metal": 0, "D3D12": 0, "DX12": 0}

INSTALL_HINT = (
    "install a Vulkan, Metal or DX12 driver for your GPU; on Debian without a GPU, "
    "'apt-get install mesa-vulkan-drivers' gives the software adapter lavapipe"
)


@dataclass(frozen=True)
class Adapter:
    """A wgpu adapter as found: its description and the object to open it."""

    name: str
    adapter_type: str
    backend: str
    handle: object

    @property
    def is_hardware(self) -> bool:
        return self.adapter_type in _HARDWARE

    def __str__(self) -> str:
        return f"{self.name} ({self.adapter_type}, {self.backend})"


_FINDING = threading.Lock()  # the first models may be made on several threads at once


def adapters() -> tuple[Adapter, ...]:
    """The usable wgpu adapters, in the order found (enumerated once per
    process, so that every model's adapter is the same object)."""
    with _FINDING:
        return _found()


@functools.lru_cache(maxsize=1)
def _found() -> tuple[Adapter, ...]:
    try:
        import wgpu

        _primary_backends_only()
        found = wgpu.gpu.enumerate_adapters_sync()
    except Exception:  # no wgpu-native library, no loader: no GPU
        return ()
    usable = []
    for handle in found:
        info = handle.info
        if info.get("backend_type") not in _BACKEND_RANK:
            continue
        usable.append(
            Adapter(info.get("device") or info.get("description") or "unknown adapter",
                    info.get("adapter_type", "Unknown"), info.get("backend_type"), handle)
        )
    return tuple(usable)


def _primary_backends_only() -> None:
    """Make wgpu's instance enumerate Vulkan, Metal and DX12 alone, before
    it exists. Its OpenGL probe, whose adapters are skipped anyway, opens
    Mesa's EGL driver, which Mesa loads with RTLD_GLOBAL: the libLLVM it
    links then sits in the process's global symbol table, and a library
    loaded later that exports its own LLVM's symbols (triton, which
    PyTorch's CUDA build loads in its first optimizer) binds its calls to
    Mesa's copy and crashes. Lavapipe, a Vulkan driver, keeps its libLLVM
    to itself. An instance made already (a program that used wgpu first)
    stays as it is."""
    try:
        from wgpu.backends.wgpu_native.extras import set_instance_extras
    except ImportError:  # another wgpu backend: nothing to set
        return
    try:
        set_instance_extras(backends=["Primary"])
    except RuntimeError:  # "Instance already exists"
        pass


def _ranked() -> list[Adapter]:
    """The adapters, best first: discrete, integrated, virtual, unknown, software."""
    return sorted(adapters(), key=lambda a: _TYPE_RANK.get(a.adapter_type, 3))


@dataclass(frozen=True)
class DeviceReport:
    """What :func:`devices` found: the adapters, and what "auto" takes and why."""

    adapters: tuple[Adapter, ...]
    auto: str
    reason: str

    def __str__(self) -> str:
        lines = ["wgpu adapters:"]
        lines += [f"  {i}. {a}" for i, a in enumerate(self.adapters)] or ["  (none)"]
        lines.append(f'device="auto" runs on: {self.auto} — {self.reason}')
        return "\n".join(lines)


def devices() -> DeviceReport:
    """List the adapters found, which one ``device="auto"`` takes and why."""
    found = tuple(_ranked())
    hardware = [a for a in found if a.is_hardware]
    if hardware:
        return DeviceReport(found, f"gpu: {hardware[0]}", "a hardware GPU adapter was found")
    if found:
        reason = (
            f"only software adapters were found ({found[0].name}): numpy is faster; "
            'device="gpu" uses the software adapter'
        )
    else:
        reason = f"no wgpu adapter was found ({INSTALL_HINT})"
    return DeviceReport(found, "cpu: numpy", reason)


def resolve(device: str) -> str:
    """``device`` ("auto", "cpu", "gpu", or "auto" read from INTRICATE_DEVICE)
    as "cpu" or "gpu"."""
    if device == "auto":
        device = os.environ.get(ENV_VAR, "").strip() or "auto"
        if device not in CHOICES:
            raise ValueError(f"expected {ENV_VAR} among {CHOICES}. Received: {ENV_VAR}={device!r}")
    if device not in CHOICES:
        raise ValueError(f"expected device among {CHOICES}. Received: device={device!r}")
    if device == "auto":
        return "gpu" if any(a.is_hardware for a in adapters()) else "cpu"
    return device


def best_adapter() -> Adapter:
    """The adapter ``device="gpu"`` runs on; RuntimeError naming what to
    install when there is none."""
    found = _ranked()
    if not found:
        raise RuntimeError(f'device="gpu" needs a wgpu adapter and none was found: {INSTALL_HINT}')
    return found[0]
