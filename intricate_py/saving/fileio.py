"""Safetensors bytes in and out, bounded before anything is allocated.

Reading works on one open file descriptor: it refuses what is not a regular
file (a FIFO would block, /dev/zero never ends), reads the 8-byte header
length and checks it against a bound and the file's size, reads and checks
the header (every tensor's dtype, shape and byte range, the ranges tiling
the data exactly), and only then reads the tensors, whose sizes the file's
real length has now vouched for.

Writing goes to a locked temporary file in the target's folder, is flushed
and fsync'd, then renamed over the target, so that the target is always the
old file or the new one. The target of a symbolic link is the file it leads
to; a file the user could not write is refused. A save killed midway leaves its temporary file
behind unlocked; the next save to the same target removes it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so stale temporary files stay
    fcntl = None

PathLike = Union[str, "os.PathLike[str]"]

#: Largest header read (the safetensors library's own bound is 100 MB; a
#: model of a thousand layers needs well under a megabyte).
MAX_HEADER_BYTES = 16 << 20
#: Tensor dtypes read, little-endian; BF16 is widened to float32.
DTYPES = {"F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
#: The one integer tensor read: PyTorch's BatchNorm counter, a scalar I64
#: that a state_dict holds beside the running statistics (by the last part
#: of its name); BatchNormalization takes it and ignores it.
COUNTER = ("num_batches_tracked", "I64", np.dtype("<i8"))
MAX_DIMENSIONS = 8
#: Temporary files of a save end with this.
TEMP_SUFFIX = ".intricate-tmp"


class FormatError(ValueError):
    """A file that is not a readable intricate-py file, or does not fit."""


# ---------------------------------------------------------------- reading
def read_safetensors(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, str] | None]:
    """The tensors of a safetensors file, and its metadata (None if it has
    none). FormatError naming the file and the fault for anything that is
    not a regular, well-formed safetensors file of float tensors;
    FileNotFoundError if there is no file."""
    path = Path(path)
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
    with open(path, "rb", buffering=0, opener=_nonblocking) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FormatError(f"{path}: not a regular file ({_file_kind(info.st_mode)}); "
                              "weights are read from regular files only")
        size = info.st_size
        if size < 8:
            raise FormatError(f"{path}: {size} bytes, too short for a safetensors file")
        length = int.from_bytes(_read_exactly(f, 8, path), "little")
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise FormatError(
                f"{path}: not a safetensors file, or a truncated one: it declares a header of {length} bytes, "
                f"{'more than the file holds' if 8 + length > size else f'more than the {MAX_HEADER_BYTES} read'}"
            )
        header = parse_json(_read_exactly(f, length, path), f"{path}: the header")
        if not isinstance(header, dict):
            raise FormatError(f"{path}: the header is not a JSON object")
        metadata = header.pop("__metadata__", None)
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
        ):
            raise FormatError(f"{path}: '__metadata__' must map names to strings")
        entries = _tensor_entries(header, size - 8 - length, path)
        data = _read_exactly(f, size - 8 - length, path)
    return {name: _tensor(data, *entry) for name, entry in entries.items()}, metadata


def _nonblocking(name: str, flags: int) -> int:
    return os.open(name, flags | getattr(os, "O_NONBLOCK", 0))


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


def _read_exactly(f, count: int, path: Path) -> bytearray:
    data = bytearray(count)
    view, done = memoryview(data), 0
    while done < count:
        n = f.readinto(view[done:])
        if not n:
            raise FormatError(f"{path}: ended after {done} of the {count} bytes expected (changed while read?)")
        done += n
    return data


def parse_json(text: bytes | str, what: str) -> Any:
    """JSON without NaN, infinities, repeated keys or lone surrogates
    (``"\\ud800"``, an escape that is no character: no string of it
    encodes as UTF-8); FormatError("``what`` ...") for anything unreadable,
    nested too deep included."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           object_pairs_hook=_unique_keys)
        _refuse_surrogates(value)
        return value
    except (ValueError, RecursionError) as error:  # UnicodeError is a ValueError
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise FormatError(f"{what} is not readable JSON ({reason})") from None


def _refuse_surrogates(value: Any) -> None:
    """ValueError if a string in ``value`` (a key or a value, at any depth)
    holds a lone surrogate: written out, every string is UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        bad = error.object[error.start:error.end].encode("unicode_escape").decode("ascii")
        raise ValueError(f"a string holds {bad}, a lone surrogate, which is not a character") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a float")
    return value


def _unique_keys(pairs: list) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice")
    return result


def _is_count(value) -> bool:
    return type(value) is int and 0 <= value < 2**63


def _tensor_entries(header: dict, data_size: int, path: Path) -> dict[str, tuple]:
    """(dtype, shape, begin, end) of each tensor, checked against the
    ``data_size`` bytes that follow the header."""
    entries = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{path}: tensor {name!r} is not described by 'dtype', 'shape' and 'data_offsets'")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        counter = _is_counter(name, dtype, shape)
        if not counter and (not isinstance(dtype, str) or dtype not in DTYPES):
            raise FormatError(f"{path}: tensor {name!r} has dtype {dtype!r}; intricate-py reads "
                              f"floating-point tensors ({', '.join(DTYPES)}), and PyTorch's "
                              f"{COUNTER[0]} (a scalar {COUNTER[1]})")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(map(_is_count, shape))):
            raise FormatError(f"{path}: tensor {name!r} has shape {shape!r}; expected a list of at most "
                              f"{MAX_DIMENSIONS} non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
                and offsets[0] <= offsets[1]):
            raise FormatError(f"{path}: tensor {name!r} has data_offsets {offsets!r}; expected [begin, end]")
        nbytes = math.prod(shape) * _dtype(dtype).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise FormatError(f"{path}: tensor {name!r} of shape {tuple(shape)} in {dtype} takes {nbytes} "
                              f"bytes, but its offsets span {offsets[1] - offsets[0]}")
        entries[name] = (dtype, tuple(shape), *offsets)
    end = 0  # the tensors must tile the data: no gap, no overlap, nothing after
    for name, (_, _, begin, stop) in sorted(entries.items(), key=lambda e: e[1][2:]):
        if begin != end:
            raise FormatError(f"{path}: tensor {name!r} starts at byte {begin} of the data, expected {end} "
                              "(tensors follow each other without gaps or overlaps)")
        end = stop
    if end != data_size:
        raise FormatError(f"{path}: the tensors take {end} bytes, but {data_size} follow the header "
                          "(a truncated or padded file)")
    return entries


def _is_counter(name: str, dtype, shape) -> bool:
    """Whether a tensor is PyTorch's BatchNorm counter (COUNTER)."""
    return dtype == COUNTER[1] and shape == [] and name.rpartition(".")[2] == COUNTER[0]


def _dtype(code: str) -> np.dtype:
    return COUNTER[2] if code == COUNTER[1] else DTYPES[code]


def _tensor(data: bytearray, dtype: str, shape: tuple, begin: int, end: int) -> np.ndarray:
    a = np.frombuffer(data, _dtype(dtype), count=math.prod(shape), offset=begin).reshape(shape)
    if dtype == "BF16":  # the top half of a float32
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a


# ---------------------------------------------------------------- writing
def atomic_write(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that it is always either the old
    file or the new one: a locked temporary file in the same folder, fsync,
    rename. Stale temporary files of earlier saves to ``path`` (their saver
    killed) are removed first.

    A symbolic link is written through: its target (a link's link's, ...)
    is replaced, the same way, and the link stays. A file that the user
    could not write (read-only) is refused with PermissionError, although
    renaming over it in a writable folder would succeed; the new file keeps
    the old one's permission bits. Nothing is created but the file: its
    folder must exist."""
    atomic_write_all([(path, data)])


def atomic_write_all(files: Sequence[tuple[PathLike, bytes]]) -> None:
    """Write each ``(path, data)`` of ``files`` as :func:`atomic_write`
    does, all of them or none: every temporary file is written and every
    check made before the first rename, and if a rename still fails, the
    files renamed before it get their old contents back (kept as hard links,
    or copies, until then). What an error leaves is the old files, all of them; only
    a crash between two renames (microseconds) could leave some new."""
    pending: list[_Pending] = []
    try:
        for path, data in files:
            pending.append(_prepare(path, data))
        _rename_all(pending)
    finally:
        for item in pending:
            item.close()
    for folder in dict.fromkeys(item.path.parent for item in pending):
        _sync_folder(folder)


class _Pending:
    """A file written to its locked temporary file ``tmp``, open as ``file``
    (closing it releases the lock), to be renamed over ``path``; ``backup``,
    a hard link to (or a copy of) the file it replaces while a rename may
    need undoing."""

    def __init__(self, path: Path, tmp: str, file):
        self.path, self.tmp, self.file = path, tmp, file
        self.backup: str | None = None
        self.backup_fd: int | None = None
        self.replaced = False

    def keep_old(self) -> None:
        """Link the file about to be replaced under a temporary name (copy
        it where the file system has no hard links), locked so that no
        other save takes it for stale."""
        if not self.path.exists():
            return
        name = str(self.path.parent / f"{_temp_prefix(self.path)}{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            os.link(self.path, name)
        except OSError:
            shutil.copy2(self.path, name)  # its permission bits too
        self.backup = name
        self.backup_fd = os.open(name, os.O_RDONLY)
        if fcntl is not None:
            fcntl.flock(self.backup_fd, fcntl.LOCK_EX)

    def replace(self) -> None:
        os.replace(self.tmp, self.path)
        self.replaced = True

    def undo(self) -> None:
        """Put the old file back (or remove the new one where there was none)."""
        if self.backup is not None:
            os.replace(self.backup, self.path)
            self.backup = None
        else:
            os.unlink(self.path)

    def close(self) -> None:
        """Close (and unlock) the temporary file; remove it and the backup
        if they are still there."""
        self.file.close()
        for name in (None if self.replaced else self.tmp, self.backup):
            if name is not None and os.path.lexists(name):
                os.unlink(name)
        if self.backup_fd is not None:
            os.close(self.backup_fd)


def _prepare(path: PathLike, data: bytes) -> _Pending:
    """``data`` in a locked temporary file beside the file that writing
    ``path`` replaces, flushed to disk with the permission bits of that file,
    after the checks of :func:`atomic_write`."""
    if os.fspath(path) == "":
        raise ValueError("expected a file path to save to. Received: ''")
    path = _target(Path(path))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "cannot save to a folder; give a file path in it", str(path))
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "cannot save over a file that you cannot write (read-only?); "
                              "nothing was written", str(path))
    # an existing file keeps its mode; a new one gets what the umask leaves
    # of 0o666, applied by the system when the temporary file is created
    # (the umask is process-wide: reading it means setting it, which
    # another thread creating a file meanwhile would see)
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    prefix = _temp_prefix(path)
    _remove_stale(folder, prefix)
    fd, tmp = _locked_temp(folder, prefix)
    item = _Pending(path, tmp, os.fdopen(fd, "wb"))
    try:
        item.file.write(data)
        item.file.flush()
        os.fsync(item.file.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        item.close()
        raise
    return item


def _rename_all(pending: list[_Pending]) -> None:
    """Rename each temporary file over its target; if one fails, undo those
    before it and raise."""
    if len(pending) > 1:
        for item in pending:
            item.keep_old()
    done: list[_Pending] = []
    try:
        for item in pending:
            item.replace()
            done.append(item)
    except BaseException:
        for item in reversed(done):
            item.undo()
        raise


def _sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (POSIX)."""
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _target(path: Path) -> Path:
    """The file that writing to ``path`` writes: ``path`` itself, or where
    its chain of symbolic links ends (which need not exist yet). OSError
    (ELOOP) for links that lead round in a circle."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # realpath stops where the links loop
        raise OSError(errno.ELOOP, "cannot save through symbolic links that lead round in a circle", str(path))
    return target


def _temp_prefix(path: Path) -> str:
    """The start of the temporary names of saves to ``path``: a hash of its
    name, so that they stay short (a legal name of 255 bytes still saves)."""
    digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
    return f".{digest}."


def _locked_temp(folder: Path, prefix: str) -> tuple[int, str]:
    """A new temporary file, locked for as long as it is open: a saver that
    dies releases the lock, which marks the file stale."""
    while True:
        fd, tmp = _new_file(folder, prefix)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)  # taken for stale between its creation and its lock: make another


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove the temporary files of saves to the same target that no live
    save holds locked."""
    if fcntl is None:
        return
    for entry in os.scandir(folder):
        if not (entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError while a save holds it
            if os.path.samestat(os.fstat(fd), os.stat(entry.path, follow_symlinks=False)):
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _new_file(folder: Path, prefix: str) -> tuple[int, str]:
    """A new file of a random name in ``folder``, open for writing, made as
    ``open`` makes files: mode 0o666 less the umask."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    while True:
        name = os.path.join(folder, f"{prefix}{secrets.token_hex(8)}{TEMP_SUFFIX}")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
