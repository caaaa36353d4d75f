"""Layers and models in safetensors files, safe against corruption,
crafted files and interrupted writes.

A file holds tensors and string metadata:

* ``format`` "intricate-py", ``format_version``, ``library_version``;
* ``kind``: "layer" (``layer_type`` and ``config``), "model"
  (``architecture``, ``input_shape``, and with the optimizer ``optimizer``,
  ``loss`` and ``shuffle_state``) or "weights" (tensors only);
* ``dtype`` of the model or layer, "float32" or "float64";
* ``checksum``: SHA-256 over every tensor (name, dtype, shape, bytes) and
  every other metadata entry, verified by each load.

Tensors use PyTorch's names and layouts: a Dense layer stores ``weight``
(units, inputs) and ``bias``, and a model prefixes them with the layer's
index (``0.weight``), as ``torch.nn.Sequential`` does.

Guarantees (tested in tests/test_saving.py and tests/test_file_safety.py):

* a load fills every parameter or fails, and changes nothing when it fails;
* nothing is allocated beyond what the file holds: the header is bounded and
  read first, tensor sizes are checked against the file's length, declared
  layers against the tensors present, before anything is built;
* only regular files are read (a FIFO or a device is refused at once);
* every malformed file raises FormatError (a ValueError) naming the file and
  the fault (a lone surrogate in its text included); a missing one
  FileNotFoundError;
* files hold finite numbers only: save refuses NaN and infinities with a
  ValueError naming the layer and tensor (the previous file stays), and load
  refuses them too, as well as values that do not fit the model's dtype;
* a save is atomic, and a temporary file left by a killed save is removed
  by the next save to the same target; it writes a symbolic link's target
  (the link stays), refuses a file the user could not write
  (PermissionError) and creates nothing but the file.
"""

from .fileio import FormatError, atomic_write, atomic_write_all, read_safetensors
from .files import load_model, load_model_into, save_model
from .layer_files import load_layer, save_layer
from .spec import FORMAT, FORMAT_VERSION, checksum, read_file, write_file
from .weights import get_weights, load_weights, save_weights, set_weights

__all__ = [
    "FormatError", "FORMAT", "FORMAT_VERSION", "atomic_write", "atomic_write_all", "checksum", "read_file",
    "read_safetensors",
    "write_file", "save_layer", "load_layer", "save_model", "load_model", "load_model_into",
    "get_weights", "set_weights", "save_weights", "load_weights",
]
