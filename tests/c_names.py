"""The names that the C exporter cannot give a model, found by asking the
compilers: ``python tests/c_names.py`` writes them to
intricate_py/export/c_reserved.txt, and tests/test_export_c_names.py checks
that the stored file holds every name this machine's compilers and headers
take.

A name is taken (a function of that name would not compile, or would
replace the C library's) if, in any of MODES, with every header of HEADERS
included,

* it is a macro (``EOF``, ``isinf``, ``iszero`` under _GNU_SOURCE), or
* declaring ``void NAME(const float *x, float *y);`` draws a diagnostic
  once every macro is undefined: a function of the C library (``printf``,
  ``roundeven`` in C2x), a variable (``stdin``), a type (``size_t``), an
  enumerator, a compiler built-in (``abs``, ``printf_unlocked``), a keyword
  of C or C++ (``class``) or a name C++'s headers bring into the global
  namespace;

and the header names are those of the C library's and the compiler's own
headers, which ``{name}.h`` would hide from ``#include <...>`` under
``-I``. Candidates are the identifiers of the preprocessed headers and the
words of the compiler proper (its built-ins' names), so that nothing is
guessed.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "intricate_py" / "export" / "c_reserved.txt"

#: The C library's headers: C23's and POSIX's, and glibc's own.
HEADERS = (
    "assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal stdalign stdarg "
    "stdatomic stdbool stddef stdint stdio stdlib stdnoreturn string tgmath threads time uchar wchar wctype "
    "aio alloca argp argz byteswap cpio dirent dlfcn elf endian envz err error execinfo fcntl fmtmsg fnmatch "
    "fstab fts ftw gconv getopt glob grp gshadow iconv ifaddrs langinfo lastlog libgen libintl link malloc "
    "mcheck memory mntent monetary mqueue netdb nl_types nss obstack paths poll printf proc_service pthread "
    "pty pwd re_comp regex resolv sched search semaphore sgtty shadow spawn stab stdio_ext strings syscall "
    "sysexits syslog tar termio termios thread_db ttyent ucontext ulimit unistd utime utmp utmpx values wait "
    "wordexp arpa/inet net/if netinet/in netinet/tcp sys/ipc sys/mman sys/msg sys/resource sys/select sys/sem "
    "sys/shm sys/socket sys/stat sys/statvfs sys/time sys/times sys/types sys/uio sys/un sys/utsname sys/wait"
).split()

#: Header names beyond those on this machine that ``{name}.h`` must not
#: take: C23's newest (glibc 2.39 and gcc 14 bring them).
FUTURE_HEADERS = ("stdbit", "stdckdint")

#: The compilers and dialects a program that includes the exported header
#: may be built with (g++ defines _GNU_SOURCE itself).
MODES = {
    "c99": ["gcc", "-x", "c", "-std=c99", "-pedantic"],
    "gnu17": ["gcc", "-x", "c", "-std=gnu17"],
    "c2x": ["gcc", "-x", "c", "-std=c2x", "-D_GNU_SOURCE"],
    "c++": ["g++", "-x", "c++", "-std=c++2b"],
}

#: Keywords of C (C23's and GNU's included) and C++ (C++23's, and the
#: alternative tokens): they are no macros and no declarations, so the
#: compilers are not asked.
KEYWORDS = frozenset((
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "bool true false nullptr constexpr static_assert thread_local alignas alignof typeof typeof_unqual asm "
    "and and_eq bitand bitor catch char8_t char16_t char32_t class compl concept consteval constinit const_cast "
    "co_await co_return co_yield decltype delete dynamic_cast explicit export friend mutable namespace new "
    "noexcept not not_eq operator or or_eq private protected public reinterpret_cast requires static_cast "
    "template this throw try typeid typename using virtual wchar_t xor xor_eq"
).split())

IDENTIFIER = re.compile(r"\b[A-Za-z][A-Za-z0-9_]*\b")


def includes() -> str:
    return "".join(f"#include <{h}.h>\n" for h in HEADERS)


def compile_text(mode: str, text: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MODES[mode], *flags, "-"], input=text, capture_output=True, text=True)


def macros(mode: str) -> set[str]:
    """The macros that the headers define in ``mode`` (not those of the
    implementation's own, which start with ``_``)."""
    out = compile_text(mode, includes(), "-E", "-dM").stdout
    return {m for m in re.findall(r"^#define ([A-Za-z][A-Za-z0-9_]*)", out, re.M)}


def header_words(mode: str) -> set[str]:
    """Every identifier of the preprocessed headers in ``mode``."""
    return set(IDENTIFIER.findall(compile_text(mode, includes(), "-E", "-P").stdout))


def compiler_words() -> set[str]:
    """The identifier-like strings of gcc's compiler proper, among them the
    names of its built-in functions (``printf_unlocked``, which no header
    declares: the compiler holds it as ``__builtin_printf_unlocked``)."""
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True, text=True, check=True).stdout.strip()
    words = subprocess.run(["strings", cc1], capture_output=True, text=True, check=True).stdout.split()
    words = [w.removeprefix("__builtin_") for w in words]
    return {w for w in words if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", w)}


def declared(mode: str, candidates: list[str], undefine: set[str]) -> set[str]:
    """The ``candidates`` that a function of the exported kind cannot be
    named in ``mode``, every macro of ``undefine`` undefined first: those
    whose declaration draws an error or a warning."""
    c_plus_plus = mode == "c++"
    lines = [includes(), *(f"#undef {m}" for m in sorted(undefine)), 'extern "C" {' if c_plus_plus else ""]
    first = sum(part.count("\n") + 1 for part in lines) + 1
    text = "\n".join(lines + [f"void {name}(const float *x, float *y);" for name in candidates]
                     + (["}"] if c_plus_plus else [])) + "\n"
    out = compile_text(mode, text, "-fsyntax-only", "-Wall", "-Wextra", "-fmax-errors=0").stderr
    hits = set()
    for line in re.findall(r"^<stdin>:(\d+):\d+: (?:error|warning)", out, re.M):
        k = int(line) - first
        if 0 <= k < len(candidates):
            hits.add(candidates[k])
    return hits


def reserved_identifiers() -> set[str]:
    """Every name taken in some mode (keywords included), none starting
    with ``_`` (the exporter refuses those by rule)."""
    words = compiler_words()
    taken = set(KEYWORDS)
    for mode in MODES:
        defined = macros(mode)
        taken |= defined
        candidates = sorted((words | header_words(mode)) - KEYWORDS - defined)
        taken |= declared(mode, candidates, defined)
    return {name for name in taken if not name.startswith("_")}


def header_names() -> set[str]:
    """The names (before ``.h``) of the C library's and the compiler's
    headers, as the exporter compares them: in lower case (a file system
    that ignores case finds ``Math.h`` as ``math.h``)."""
    compiler = Path(subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                                   check=True).stdout.strip())
    names = {h for h in HEADERS if "/" not in h} | {"features", "stdc-predef"} | set(FUTURE_HEADERS)
    names |= {p.stem for p in compiler.glob("*.h")}  # the compiler's own: stddef, immintrin, ...
    for folder in (Path("/usr/include"), Path("/usr/include/x86_64-linux-gnu")):
        names |= {p.stem for p in folder.glob("*.h") if _from_glibc(p)}  # a.out, fpu_control, ...
    return {n.lower() for n in names}


def _from_glibc(path: Path) -> bool:
    """Whether Debian's libc6-dev installed ``path`` (other libraries'
    headers, zlib.h say, are left out; without dpkg, all of them: HEADERS
    names the C library's own)."""
    return str(path) in _glibc_files()


@functools.lru_cache(maxsize=None)
def _glibc_files() -> frozenset[str]:
    """The files of Debian's libc6-dev, none where dpkg cannot tell."""
    try:
        listed = subprocess.run(["dpkg", "-L", "libc6-dev"], capture_output=True, text=True)
    except FileNotFoundError:
        return frozenset()
    return frozenset(listed.stdout.split()) if listed.returncode == 0 else frozenset()


def versions() -> str:
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"gcc {gcc}, glibc {libc.split()[-1]}"


def text() -> str:
    """The file's text: a comment, then ``[identifiers]`` and ``[headers]``,
    a name a line, sorted."""
    return "\n".join([
        "# The names the C exporter refuses (intricate_py/export/c.py reads this file): identifiers that a",
        "# macro, a declaration, a built-in or a keyword takes in C99, GNU C17, C2x with _GNU_SOURCE or C++23",
        "# with the C library's headers, and the names of those headers in lower case. Made by",
        f"# tests/c_names.py ({versions()}); run it again to remake the file.",
        "[identifiers]", *sorted(reserved_identifiers()), "[headers]", *sorted(header_names()), "",
    ])


if __name__ == "__main__":
    STORED.write_text(text(), encoding="ascii")
    print(f"wrote {STORED}", file=sys.stderr)
