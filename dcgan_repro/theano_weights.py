"""The authors' released Theano weights (Newmu/dcgan_code ee12b2d) in our PyTorch nets, and ours in their layout.

The released models are joblib pickles (``200_gen_params.jl``, ``30_discrim_params.jl``, ...) of a *list* of
arrays, each array stored beside the pickle as ``<name>.jl_NN.npy`` (NN = 01, 02, ... in list order). The list
order is the order the Theano code builds its parameters, which is the order of ``named_parameters()`` of our
:class:`~dcgan_repro.models.ProjectedGenerator` and :class:`~dcgan_repro.models.ConvDiscriminator`:

* G: ``gw`` (Linear, Theano (nz, C0*16)), ``gg``, ``gb`` (BN1d gain, bias over all C0*4*4 units), then per
  deconvolution its kernel (Theano (C_in, C_out, k, k), the ``ConvTranspose2d`` layout) and, except for the
  output layer, BN gain and bias; the output kernel ``gwx`` last.
* D: the first conv kernel ``dw`` (no BN), then per conv its kernel (C_out, C_in, k, k) and BN gain and bias,
  and the Linear head ``dwy`` (Theano (C*H*W, 1)) last.

Transforms (docs/REFERENCE.md Sec. 3): Theano's ``dnn_conv`` and the gradient-of-conv ``deconv`` use
``conv_mode='conv'`` (a true convolution: the kernel is flipped relative to PyTorch's cross-correlation), so every
conv and deconv kernel is ``torch.flip(w, [2, 3])``; a Linear weight is ``w.T`` (Theano computes ``X @ w``); BN
gains and biases map as they are. No layer has a bias (the authors' nets have none). Shapes are checked strictly,
for every array, before anything is copied, and an error lists every problem at once.

The authors' release (Newmu/dcgan_code ``models/``) is complete; a copy may lack files (the one this project was
tested with lacks D's two 512-channel conv kernels, arrays 11 and 14, and G's arrays 01, 04, 07). From such a copy
only a *prefix* of D is loadable: :func:`load_discriminator` with ``n_convs=4`` returns a
:class:`DiscriminatorPrefix` holding D's first four conv layers, whose Sec. 5.1 features are
(128+128+256+256) x 16 = 12,288-dimensional instead of 28,672.
Asking for more than the file holds names the missing files and the largest loadable prefix. The workflow loads the
release through :mod:`dcgan_repro.released`, which first checks every file against the release's git blob ids.

BN running statistics are not part of the release (the authors' nets always normalise with batch statistics):
D's running statistics stay at their initial values and the feature extractor fixes them from training images
(``features.bn_stats: fixed``), as the authors' code does.

Every file is treated as untrusted: the ``.jl`` pickle may hold only the opcodes and the two globals of a joblib
list pickle (``numpy.ndarray`` unpickles to a marker that cannot be called), and every ``.npy`` header is checked
(float dtype, at most :data:`MAX_ARRAY_BYTES`, exactly as many data bytes as the file holds, and the shape the net
expects) before its array is allocated; anything else is a :class:`WeightFileError` naming the file.

:func:`write_theano_params` writes any of these nets in the same layout (the ``.jl`` list pickle plus ``.npy``
siblings), which the tests use for a round trip and users can use to hand our weights to the authors' code.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import pickletools
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import io, models

log = logging.getLogger(__name__)

# Run configs (config.yaml runs.<name> architecture keys) of the two released models (docs/REFERENCE.md Sec. 3).
RELEASED_RUNS: dict[str, dict[str, Any]] = {
    "svhn32": {"model": "svhn32", "recipe": "paper", "nz": 100, "ngf": 64, "ndf": 64},
    "imagenet32": {"model": "imagenet32", "recipe": "paper", "nz": 256, "ngf": 128, "ndf": 128},
}
# File names inside the released folders (svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb, epoch 200;
# imagenet_gan_pretrain_128f_relu_lrelu_7l_3x3_256z, epoch 30).
RELEASED_FILES: dict[str, dict[str, str]] = {
    "svhn32": {"G": "200_gen_params.jl", "D": "200_discrim_params.jl"},
    "imagenet32": {"G": "30_gen_params.jl", "D": "30_discrim_params.jl"},
}
KINDS = ("linear", "conv", "bn_gain", "bn_bias")

# Largest .npy array the loader allocates. The biggest array of any net here is tens of MiB (dcgan64 at ngf=128:
# its 1024x512x5x5 kernel, 50 MiB; the released nets' largest is 9 MiB), so 1 GiB leaves room for much wider
# configs while a hostile or corrupt header can no longer make the loader ask for terabytes.
MAX_ARRAY_BYTES = 1 << 30
# Largest .jl list pickle read: the released ones are about 1 KiB (under 50 bytes per listed array).
MAX_PICKLE_BYTES = 1 << 20


class WeightFileError(ValueError):
    """A released-weights file that is absent, unreadable, or does not fit the net it is loaded into."""


# --- reading and writing the joblib list format ------------------------------------------------------------


class _NDArrayWrapper:
    """Stands in for joblib's ``NDArrayWrapper`` while unpickling: only its state (the .npy file name) is kept."""

    def __setstate__(self, state: dict) -> None:
        self.state = state


_CALLS_NDARRAY = ("the pickle calls numpy.ndarray (to build an array inside the pickle); a joblib list pickle "
                  "only names it, as the 'subclass' of its NDArrayWrapper entries")


class _NDArrayMarker:
    """What ``numpy.ndarray`` unpickles to. joblib's list pickles name the class only as the ``subclass`` value
    of an ``NDArrayWrapper``'s state; calling it (REDUCE, NEWOBJ, INST, OBJ) or BUILDing it, which would let
    the file allocate an array of any shape, is refused."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError(_CALLS_NDARRAY)

    @classmethod
    def __setstate__(cls, state: Any) -> None:
        raise pickle.UnpicklingError(_CALLS_NDARRAY)


def _allowed_global(module: str, name: str) -> type:
    if name == "NDArrayWrapper" and module.endswith("numpy_pickle"):
        return _NDArrayWrapper
    if (module, name) == ("numpy", "ndarray"):
        return _NDArrayMarker
    raise pickle.UnpicklingError(f"unexpected object {module}.{name} (a joblib list of arrays holds only "
                                 "NDArrayWrapper entries)")


# The opcodes a joblib 0.9 list pickle (protocol 2, as the released files and _list_pickle write it) is made of,
# with their variants for longer strings and memo indices. Nothing here calls anything but NEWOBJ (of
# NDArrayWrapper; _NDArrayMarker refuses it) and BUILD (NDArrayWrapper.__setstate__, which only stores).
_LIST_PICKLE_OPCODES = frozenset({
    "PROTO", "STOP", "MARK", "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_TUPLE", "EMPTY_DICT", "SETITEM", "SETITEMS",
    "GLOBAL", "NEWOBJ", "BUILD", "NEWTRUE", "NEWFALSE", "NONE", "SHORT_BINSTRING", "BINSTRING",
    "SHORT_BINUNICODE", "BINUNICODE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "MEMOIZE",
})


def _check_list_pickle(data: bytes) -> None:
    """Walk the opcodes of ``data`` before unpickling it: only the opcodes and globals of a joblib list pickle may
    occur. Each opcode is checked before its argument is read, and arguments are read by pickletools from an
    in-memory copy, so a declared length cannot allocate more than the (capped) file holds."""
    f = BytesIO(data)
    while True:
        pos = f.tell()
        code = f.read(1)
        op = pickletools.code2op.get(code.decode("latin-1")) if code else None
        if op is None:
            raise pickle.UnpicklingError(f"byte {pos}: " + (f"unknown opcode {code!r}" if code else
                                                            "the pickle ends without STOP"))
        if op.name not in _LIST_PICKLE_OPCODES:
            raise pickle.UnpicklingError(f"opcode {op.name} at byte {pos} does not occur in joblib list pickles")
        try:
            arg = op.arg.reader(f) if op.arg is not None else None
        except ValueError as e:  # a truncated argument, a length past the end of the file
            raise pickle.UnpicklingError(f"opcode {op.name} at byte {pos}: {e}") from e
        if op.name == "GLOBAL":
            module, _, name = arg.partition(" ")
            _allowed_global(module, name)
        if op.name == "STOP":
            return


class _ListUnpickler(pickle.Unpickler):
    """Unpickles a joblib (< 0.10) list pickle without joblib and without running any code from the file.

    Only the two globals such a file holds are resolved (``...numpy_pickle.NDArrayWrapper``, and
    ``numpy.ndarray`` as :class:`_NDArrayMarker`, which cannot be called); anything else is refused. The pickles
    name ``sklearn.externals.joblib``, which current scikit-learn no longer has, so ``joblib.load`` cannot read
    them. Feed it only data that passed :func:`_check_list_pickle` (see :func:`list_array_files`).
    """

    def find_class(self, module: str, name: str) -> Any:
        return _allowed_global(module, name)


def list_array_files(jl_path: io.PathLike) -> list[Path]:
    """The ``.npy`` files a joblib list pickle refers to, in list order (they need not all exist)."""
    jl_path = Path(jl_path)
    if not jl_path.is_file():
        raise WeightFileError(f"weights file {jl_path} does not exist (expected a joblib list pickle such as "
                              f"200_gen_params.jl with its .npy siblings)")
    try:
        with open(jl_path, "rb") as f:
            data = f.read(MAX_PICKLE_BYTES + 1)
    except OSError as e:
        raise WeightFileError(f"{jl_path} cannot be read: {e}") from e
    if len(data) > MAX_PICKLE_BYTES:
        raise WeightFileError(f"{jl_path} has {os.path.getsize(jl_path)} bytes; expected a joblib list pickle of "
                              f"at most {MAX_PICKLE_BYTES} bytes (the released ones are about 1 KiB)")
    try:
        _check_list_pickle(data)
        items = _ListUnpickler(BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise WeightFileError(f"{jl_path} is not a joblib list pickle of arrays: {e}") from e
    if not isinstance(items, list) or not all(isinstance(i, _NDArrayWrapper) for i in items):
        raise WeightFileError(f"{jl_path} is not a joblib list pickle of arrays (got {type(items).__name__})")
    names = []
    for i, item in enumerate(items):
        state = getattr(item, "state", None)
        if not isinstance(state, dict) or state.get("subclass", _NDArrayMarker) is not _NDArrayMarker:
            raise WeightFileError(f"{jl_path}: entry {i + 1} is not an NDArrayWrapper of a numpy.ndarray "
                                  f"(state {state!r})")
        name = state.get("filename")
        if isinstance(name, bytes):
            name = name.decode()
        if not isinstance(name, str) or Path(name).name != name:
            raise WeightFileError(f"{jl_path}: entry {i + 1} names no plain sibling file ({name!r})")
        names.append(jl_path.parent / name)
    return names


@dataclass(frozen=True)
class NpyHeader:
    """The checked header of one ``.npy`` file: what it holds and where its data start."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # Python ints: no overflow whatever the header says

    def describe(self) -> str:
        size = f"{self.nbytes} bytes" + (f" = {_human_bytes(self.nbytes)}" if self.nbytes >= 1024 else "")
        return f"shape {self.shape}, dtype {self.dtype.str} ({size})"


def _human_bytes(n: int) -> str:
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if x < 1024 or unit == "PiB":
            return f"{x:.1f} {unit}"
        x /= 1024
    raise AssertionError  # unreachable


def _read_npy_header(f: Any, path: Path) -> NpyHeader:
    """Parse and check the header of the open ``.npy`` file ``f`` (positioned at its start) without reading data:
    a float dtype, at most :data:`MAX_ARRAY_BYTES`, and exactly as many data bytes as the file holds."""
    expected = (f"expected a float array (the released ones are float32, '<f4') of at most "
                f"{_human_bytes(MAX_ARRAY_BYTES)} (MAX_ARRAY_BYTES)")
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise WeightFileError(f"{path}: .npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0 "
                                  "(what np.save writes for plain float arrays)")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(f)
        offset = f.tell()
        file_size = os.fstat(f.fileno()).st_size
    except WeightFileError:
        raise
    except (ValueError, OSError) as e:
        raise WeightFileError(f"{path} is not a .npy file with a readable header ({e}); {expected}") from e
    h = NpyHeader(path, tuple(shape), dtype, bool(fortran_order), offset)
    says = f"{path}: the header says {h.describe()}"
    if any(not isinstance(d, int) or d < 0 for d in h.shape):
        raise WeightFileError(f"{says}, which has a negative dimension; {expected}")
    if dtype.hasobject:
        raise WeightFileError(f"{says}: an object array (its data would be a pickle); {expected}")
    if dtype.kind != "f" or dtype.fields is not None or dtype.subdtype is not None:
        raise WeightFileError(f"{says}, which is not a floating-point dtype; {expected}")
    if h.nbytes > MAX_ARRAY_BYTES:
        raise WeightFileError(f"{says}; {expected}, so it is not read")
    if file_size - offset != h.nbytes:
        raise WeightFileError(f"{says}, but the file holds {file_size - offset} bytes of data after its "
                              f"{offset}-byte header; expected exactly {h.nbytes} (the file is truncated, padded, "
                              "or its header is wrong)")
    return h


def read_npy_header(path: io.PathLike) -> NpyHeader:
    """The checked header of a ``.npy`` weights file (see :func:`_read_npy_header`); reads no array data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _read_npy_header(f, path)
    except OSError as e:
        raise WeightFileError(f"{path} cannot be read: {e}") from e


def read_npy(path: io.PathLike, expected_shape: Sequence[int] | None = None) -> np.ndarray:
    """One ``.npy`` weights array, allocated only after its header passed the checks of :func:`read_npy_header`
    (and, given ``expected_shape``, has that shape)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            h = _read_npy_header(f, path)
            if expected_shape is not None and h.shape != tuple(expected_shape):
                raise WeightFileError(f"{path}: the header says {h.describe()}; expected shape "
                                      f"{tuple(expected_shape)}")
            buf = np.empty(h.nbytes, dtype=np.uint8)
            n = f.readinto(buf)
    except OSError as e:
        raise WeightFileError(f"{path} cannot be read: {e}") from e
    if n != h.nbytes:  # the file changed under us
        raise WeightFileError(f"{path}: the header says {h.describe()}, but only {n} bytes of data could be read")
    return buf.view(h.dtype).reshape(h.shape, order="F" if h.fortran_order else "C")


def read_param_headers(jl_path: io.PathLike) -> list[NpyHeader | None]:
    """The checked ``.npy`` headers of a released ``.jl`` file in list order; ``None`` where a file is absent."""
    return [read_npy_header(p) if p.is_file() else None for p in list_array_files(jl_path)]


def read_param_list(jl_path: io.PathLike) -> list[np.ndarray | None]:
    """The arrays of a released ``.jl`` file in list order; ``None`` where the ``.npy`` sibling is absent.

    Every header is checked (:func:`read_npy_header`) before any array is allocated."""
    return [read_npy(h.path) if h is not None else None for h in read_param_headers(jl_path)]


def _pickle_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b  # BINUNICODE


def _list_pickle(names: Sequence[str]) -> bytes:
    """Protocol-2 pickle of a list of joblib ``NDArrayWrapper`` entries, as joblib 0.9 wrote them (by hand:
    the class lives in ``sklearn.externals.joblib``, which cannot be imported any more)."""
    out = bytearray(b"\x80\x02](")  # PROTO 2, EMPTY_LIST, MARK
    for name in names:
        out += b"csklearn.externals.joblib.numpy_pickle\nNDArrayWrapper\n)\x81}("  # GLOBAL, (), NEWOBJ, {}, MARK
        out += _pickle_str("allow_mmap") + b"\x88"  # True
        out += _pickle_str("subclass") + b"cnumpy\nndarray\n"
        out += _pickle_str("filename") + _pickle_str(name)
        out += b"ub"  # SETITEMS, BUILD
    out += b"e."  # APPENDS, STOP
    return bytes(out)


# --- the mapping between our parameters and the Theano list ------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One entry of the Theano parameter list and the parameter of ours it fills."""

    index: int  # position in the list (file suffix _NN = index + 1)
    name: str  # our parameter name (named_parameters)
    kind: str  # one of KINDS
    theano_shape: tuple[int, ...]
    conv: int | None  # D: which conv layer (0-based) the array belongs to; None for D's head and for G


def _kind(module: nn.Module, pname: str) -> str:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and pname == "weight":
        return "conv"
    if isinstance(module, nn.Linear) and pname == "weight":
        return "linear"
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        return "bn_gain" if pname == "weight" else "bn_bias"
    raise WeightFileError(f"parameter {pname} of {type(module).__name__} has no counterpart in the authors' "
                          "Theano layout")


def _check_net(net: nn.Module) -> None:
    ok = (isinstance(net, (models.ProjectedGenerator, models.ConvDiscriminator, DiscriminatorPrefix))
          and getattr(net, "recipe", None) == "paper")
    if not ok:
        raise WeightFileError(f"{type(net).__name__} (recipe {getattr(net, 'recipe', None)!r}) is not one of the "
                              "authors' unconditional nets (models dcgan64, imagenet32, svhn32 with recipe paper); "
                              "the Theano layout is defined only for those")


def theano_slots(net: nn.Module) -> list[Slot]:
    """The Theano list layout of ``net``: one :class:`Slot` per parameter, in list order."""
    _check_net(net)
    modules = dict(net.named_modules())
    slots = []
    for i, (name, p) in enumerate(net.named_parameters()):
        mod_name, _, pname = name.rpartition(".")
        kind = _kind(modules[mod_name], pname)
        shape = tuple(p.shape)
        if kind == "linear":
            shape = shape[::-1]  # torch (out, in) = Theano (in, out).T
        conv = int(name.split(".")[1]) if name.startswith("convs.") else None
        slots.append(Slot(i, name, kind, shape, conv))
    return slots


def to_theano(kind: str, w: Tensor) -> np.ndarray:
    """Our parameter -> the Theano array (inverse of :func:`from_theano`)."""
    w = w.detach().cpu().float()
    if kind == "conv":
        w = torch.flip(w, [2, 3])  # cross-correlation kernel -> Theano convolution kernel
    elif kind == "linear":
        w = w.t()  # (out, in) -> (in, out)
    return np.ascontiguousarray(w.numpy())


def from_theano(kind: str, a: np.ndarray) -> Tensor:
    """A Theano array -> our parameter: conv/deconv kernels ``torch.flip(w, [2, 3])``, Linear ``w.T``."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    w = torch.from_numpy(np.array(a, dtype=np.float32, copy=True))
    if kind == "conv":
        return torch.flip(w, [2, 3])
    if kind == "linear":
        return w.t().contiguous()
    return w


def load_params(net: nn.Module, arrays: Sequence[np.ndarray | None], *, source: str,
                n_convs: int | None = None) -> None:
    """Copy a Theano parameter list into ``net`` (in place), after checking every array's presence and shape.

    ``n_convs`` (discriminators only): load only the arrays of D's first ``n_convs`` conv layers; the arrays of
    later layers and of the head may then be absent. ``source`` names the file in error messages.
    """
    slots, wanted = _check_fit(net, arrays, source=source, n_convs=n_convs)
    params = dict(net.named_parameters())
    with torch.no_grad():
        for s in wanted:
            params[s.name].copy_(from_theano(s.kind, arrays[s.index]))
    log.info("loaded %d of %d arrays from %s into %s", len(wanted), len(slots), source, type(net).__name__)


def _check_fit(net: nn.Module, arrays: Sequence[Any], *, source: str, n_convs: int | None
               ) -> tuple[list[Slot], list[Slot]]:
    """(all slots, the slots to load) of ``net``, after checking the presence and ``.shape`` of every wanted entry
    of ``arrays`` (arrays, or the :class:`NpyHeader` of each, so that nothing is allocated before the check).
    Raises :class:`WeightFileError` listing every problem."""
    slots = theano_slots(net)
    if len(arrays) != len(slots):
        raise WeightFileError(f"{source} lists {len(arrays)} arrays but {type(net).__name__} "
                              f"({getattr(net, 'model', '?')}) has {len(slots)} parameters in the Theano layout; "
                              "is it the other net (gen vs discrim) or another model?")
    if n_convs is not None:
        n_total = len(getattr(net, "convs", []))
        if not isinstance(net, (models.ConvDiscriminator, DiscriminatorPrefix)) or not 1 <= n_convs <= n_total:
            raise ValueError(f"n_convs = {n_convs!r}: a prefix can be loaded only into a discriminator, with "
                             f"1 <= n_convs <= {n_total}")
        wanted = [s for s in slots if s.conv is not None and s.conv < n_convs]
    else:
        wanted = slots
    missing = [s for s in wanted if arrays[s.index] is None]
    wrong = [(s, arrays[s.index].shape) for s in wanted
             if arrays[s.index] is not None and tuple(arrays[s.index].shape) != s.theano_shape]
    problems = [f"array {s.index + 1:02d} ({s.name}, {s.kind}) is missing" for s in missing]
    problems += [f"array {s.index + 1:02d} ({s.name}, {s.kind}) has shape {shape}, expected {s.theano_shape}"
                 for s, shape in wrong]
    if problems:
        hint = ""
        if missing and isinstance(net, models.ConvDiscriminator):
            complete = _complete_prefix(slots, arrays)
            hint = (f". Only D's first {complete} conv layers are complete in this file: load them with "
                    f"n_convs={complete}" if complete else ". Not even D's first conv layer is complete")
        raise WeightFileError(f"{source} does not fit {type(net).__name__} ({getattr(net, 'model', '?')}): "
                              + "; ".join(problems) + hint)
    return slots, wanted


def _load_file(net: nn.Module, path: Path, n_convs: int | None = None) -> None:
    """Load the released file ``path`` into ``net``: every ``.npy`` header is checked, and its shape against
    ``net``, before the arrays ``net`` needs (and only those) are read."""
    headers = read_param_headers(path)
    _, wanted = _check_fit(net, headers, source=str(path), n_convs=n_convs)
    arrays: list[np.ndarray | None] = [None] * len(headers)
    for s in wanted:
        arrays[s.index] = read_npy(headers[s.index].path, expected_shape=s.theano_shape)
    load_params(net, arrays, source=str(path), n_convs=n_convs)


def _complete_prefix(slots: Sequence[Slot], arrays: Sequence[np.ndarray | None]) -> int:
    """Number of D's leading conv layers whose arrays are all present."""
    n_convs = 1 + max(s.conv for s in slots if s.conv is not None)
    for k in range(n_convs):
        if any(arrays[s.index] is None for s in slots if s.conv == k):
            return k
    return n_convs


# --- D prefix (partial ImageNet release) -------------------------------------------------------------------


class DiscriminatorPrefix(models._Net):
    """The first ``n_convs`` conv layers of a :class:`~dcgan_repro.models.ConvDiscriminator`: a feature extractor
    only (``features(x)`` as D's, truncated); it has no logit head, so calling it raises."""

    def __init__(self, netD: models.ConvDiscriminator, n_convs: int) -> None:
        super().__init__(nz=netD.nz, n_classes=0, image_shape=netD.image_shape, output_range=netD.output_range,
                         model=netD.model, recipe=netD.recipe)
        if not 1 <= n_convs <= len(netD.convs):
            raise ValueError(f"n_convs must be in [1, {len(netD.convs)}], got {n_convs}")
        self.n_convs = n_convs
        self.convs = nn.ModuleList(list(netD.convs)[:n_convs])

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        models._no_labels(self, y)
        out = []
        for block in self.convs:
            x = block(x)  # (N, c_out, h, w)
            out.append(x)
        return out

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        raise RuntimeError(f"this is D's first {self.n_convs} conv layers only (a feature extractor); it has no "
                           "logit head")


# --- entry points ------------------------------------------------------------------------------------------


def released_file(weights: io.PathLike, model: str, net: str) -> Path:
    """``weights`` may be the ``.jl`` file itself or the released folder (then the known file name is used)."""
    p = Path(weights)
    if p.is_dir():
        if model not in RELEASED_FILES:
            raise WeightFileError(f"no released file names are known for model {model!r}; pass the .jl file")
        p = p / RELEASED_FILES[model][net]
    return p


def _run_for(model: str, run: dict[str, Any] | None) -> dict[str, Any]:
    if run is not None:
        return run
    if model not in RELEASED_RUNS:
        raise ValueError(f"model {model!r} has no released weights; allowed: {', '.join(RELEASED_RUNS)}")
    return RELEASED_RUNS[model]


def load_generator(weights: io.PathLike, model: str = "svhn32", run: dict[str, Any] | None = None
                   ) -> models.ProjectedGenerator:
    """The authors' G: our generator of ``run`` (default: the released architecture of ``model``) with the
    weights of ``weights`` (a ``*_gen_params.jl`` file or the released folder); eval mode, on the CPU."""
    run = _run_for(model, run)
    path = released_file(weights, run["model"], "G")
    with torch.random.fork_rng(devices=[]):  # the throw-away init must not shift the caller's RNG stream
        netG, _ = models.build_models(run)
    _load_file(netG, path)
    return netG.eval()


def load_discriminator(weights: io.PathLike, model: str = "svhn32", run: dict[str, Any] | None = None,
                       n_convs: int | None = None) -> nn.Module:
    """The authors' D (a ``*_discrim_params.jl`` file or the released folder) in our discriminator of ``run``.

    With ``n_convs`` only the first ``n_convs`` conv layers are loaded and a :class:`DiscriminatorPrefix` is
    returned (the partial ImageNet release: ``n_convs=4``, 12,288-d features). Eval mode, on the CPU.
    """
    run = _run_for(model, run)
    path = released_file(weights, run["model"], "D")
    with torch.random.fork_rng(devices=[]):
        _, netD = models.build_models(run)
    _load_file(netD, path, n_convs=n_convs)
    net = DiscriminatorPrefix(netD, n_convs) if n_convs is not None else netD
    return net.eval()


def write_theano_params(net: nn.Module, jl_path: io.PathLike) -> list[Path]:
    """Write ``net``'s parameters in the released layout: ``jl_path`` (list pickle) plus ``jl_path``_NN.npy.

    Returns the files written (each atomically; the ``.jl`` last, so it never names arrays not yet written).
    """
    jl_path = Path(jl_path)
    params = dict(net.named_parameters())
    written = []
    names = []
    for s in theano_slots(net):
        name = f"{jl_path.name}_{s.index + 1:02d}.npy"
        io.save_npy(jl_path.parent / name, to_theano(s.kind, params[s.name]))
        names.append(name)
        written.append(jl_path.parent / name)
    with io.atomic_path(jl_path) as tmp:
        tmp.write_bytes(_list_pickle(names))
    return [*written, jl_path]
