"""Device selection: auto, INTRICATE_DEVICE, devices() and the errors."""

import pytest

from intricate_py import Model, devices as list_devices
from intricate_py import device_choice as devices_module
from intricate_py.device_choice import Adapter
from intricate_py.layers import Dense


def fake(*types):
    return tuple(Adapter(f"adapter {i}", t, "Vulkan", object()) for i, t in enumerate(types))


@pytest.fixture
def adapters(monkeypatch):
    """Replace the adapters found with made-up ones."""

    def use(*types):
        found = fake(*types)
        monkeypatch.setattr(devices_module, "adapters", lambda: found)
        return found

    monkeypatch.delenv("INTRICATE_DEVICE", raising=False)
    return use


def test_auto_takes_a_hardware_gpu_first(adapters):
    adapters("CPU", "IntegratedGPU", "DiscreteGPU")
    assert devices_module.resolve("auto") == "gpu"
    report = list_devices()
    assert "adapter 2 (DiscreteGPU" in report.auto and "hardware" in report.reason


def test_auto_leaves_a_software_adapter_for_numpy(adapters):
    adapters("CPU")
    assert devices_module.resolve("auto") == "cpu"
    report = list_devices()
    assert report.auto == "cpu: numpy" and "software" in report.reason and 'device="gpu"' in report.reason
    assert "adapter 0 (CPU, Vulkan)" in str(report)


def test_no_adapter_gpu_names_what_to_install(adapters):
    adapters()
    assert devices_module.resolve("auto") == "cpu"
    assert "mesa-vulkan-drivers" in list_devices().reason
    with pytest.raises(RuntimeError, match="mesa-vulkan-drivers"):
        Model([Dense(2)], device="gpu")


def test_environment_variable_sets_the_default(adapters, monkeypatch):
    adapters("CPU")
    monkeypatch.setenv("INTRICATE_DEVICE", "gpu")
    assert devices_module.resolve("auto") == "gpu"
    monkeypatch.setenv("INTRICATE_DEVICE", "cpu")
    assert devices_module.resolve("auto") == "cpu"
    assert devices_module.resolve("gpu") == "gpu"  # an explicit device wins
    monkeypatch.setenv("INTRICATE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="INTRICATE_DEVICE='tpu'"):
        devices_module.resolve("auto")


def test_model_device_tells_backend_and_adapter(gpu):
    model = Model([Dense(2)], input_size=3, device="gpu")
    assert model.device.kind == "gpu"
    assert "llvmpipe" in model.device.name or "gpu:" in model.device.name
    assert set(model.device.stats()) >= {"submits", "readbacks", "bytes_read_back", "buffers_created", "dispatches"}
    cpu_model = Model([Dense(2)], input_size=3, device="cpu")
    assert cpu_model.device.kind == "cpu" and "numpy" in cpu_model.device.name


def test_devices_lists_the_real_adapters(gpu):
    report = list_devices()
    assert report.adapters, "the software adapter at least"
    assert all(a.backend != "OpenGL" for a in report.adapters)


def test_float64_with_auto_runs_on_the_cpu_and_says_why(adapters):
    """A hardware GPU is found, but computes in float32 only: "auto" takes the
    CPU for float64; only an explicit device="gpu" refuses it."""
    adapters("DiscreteGPU")
    model = Model([Dense(2)], input_size=3, dtype="float64")
    assert model.device.kind == "cpu" and model.dtype == "float64"
    assert "float64 runs on the CPU" in model.device.name
    with pytest.raises(ValueError, match="float32.*WGSL has no float64"):
        Model([Dense(2)], device="gpu", dtype="float64")


STAND_IN = r"""
/* a stand-in for triton's library: it carries its own copy of an LLVM
   function, exported (as libtriton exports its LLVM's symbols), and calls it */
void *LLVMContextCreate(void) { return (void *)0x1234; }
void *own_context(void) { return LLVMContextCreate(); }
"""

AFTER_A_GPU_MODEL = """
import ctypes, sys
from intricate_py import Model
from intricate_py.layers import Dense
Model([Dense(2)], input_size=2, device="gpu")
own = ctypes.CDLL(sys.argv[1])
own.own_context.restype = ctypes.c_void_p
print(own.own_context(), hasattr(ctypes.CDLL(None), "LLVMContextCreate"))
"""


def test_a_library_with_its_own_llvm_loaded_after_a_gpu_model_keeps_it(gpu, tmp_path):
    """PyTorch's CUDA build crashed in the first torch.optim.Adam(...) after
    a GPU model: triton's library, loaded then, bound its LLVM calls to the
    libLLVM that Mesa's EGL driver (opened with RTLD_GLOBAL when wgpu probed
    its OpenGL backend, whose adapters the project skips) had put in the
    global symbol table. The instance now enumerates Vulkan, Metal and DX12
    only, so a library loaded later calls its own copy."""
    import shutil
    import subprocess
    import sys

    if sys.platform != "linux" or shutil.which("gcc") is None:
        pytest.skip("needs Linux and gcc")
    (tmp_path / "own.c").write_text(STAND_IN)
    library = tmp_path / "libown.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-o", str(library), str(tmp_path / "own.c")], check=True)
    run = subprocess.run([sys.executable, "-c", AFTER_A_GPU_MODEL, str(library)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [str(0x1234), "False"]  # its own function; no LLVM in the global table
