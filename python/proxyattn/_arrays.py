"""Array plumbing shared by the numpy and torch faces: DLPack capsules, allocation like an input,
streams and host cu_seqlens. torch is never imported here; a tensor is recognised through
sys.modules, so numpy-only users never load it.
"""
import sys

import numpy as np

from . import _core

ALIGN = 256  # workspace alignment the library requires


class BF16Array(np.ndarray):
    """A uint16 numpy array whose elements are bfloat16 bit patterns (numpy has no bf16 dtype).

    Make one with proxyattn.as_bf16(float_array); proxyattn.bf16_to_float32 converts back. Outputs
    computed from BF16Array inputs are BF16Array too.
    """


def as_bf16(x):
    """float array -> BF16Array, rounding to nearest even (NaN stays NaN)."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    bits = f.view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return out.view(BF16Array)


def bf16_to_float32(x):
    """BF16Array (or uint16 bit patterns) -> float32 array."""
    u = np.asarray(x, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return u.view(np.float32)


def torch_module():
    return sys.modules.get("torch")


def is_torch(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_bf16_numpy(x):
    return isinstance(x, BF16Array)


def check_writable(x, name):
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        raise _core.Error(f"proxyattn: {name} is a read-only numpy array, expected a writable one")


def capsule(x, name):
    """A DLPack capsule viewing x (zero copy), or x itself for other DLPack producers.

    Read-only numpy inputs are copied once (numpy will not export them); outputs must be writable.
    """
    if is_torch(x):
        if x.requires_grad:
            x = x.detach()
        to_dlpack = getattr(sys.modules["torch"].utils.dlpack, "to_dlpack", None)
        return to_dlpack(x) if to_dlpack is not None else x.__dlpack__()
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:
            x = np.array(x)
        return x.view(np.ndarray).__dlpack__()
    if x is None:
        return None
    return x


def out_capsule(x, name):
    check_writable(x, name)
    return capsule(x, name)


def empty(like, shape, float32=False):
    """An uninitialized array of like's kind, dtype (or float32) and device."""
    if is_torch(like):
        torch = sys.modules["torch"]
        dtype = torch.float32 if float32 else like.dtype
        return torch.empty(shape, dtype=dtype, device=like.device)
    if isinstance(like, np.ndarray):
        if float32:
            return np.empty(shape, dtype=np.float32)
        out = np.empty(shape, dtype=like.dtype)
        return out.view(BF16Array) if is_bf16_numpy(like) else out
    raise _core.Error(f"proxyattn: cannot allocate an output like a {type(like).__name__}; "
                      "pass out= (and lse=) explicitly")


def workspace(like, nbytes):
    """A 1-D uint8 array of nbytes on like's device, 256-byte aligned."""
    nbytes = int(nbytes)
    if is_torch(like):
        torch = sys.modules["torch"]
        raw = torch.empty(nbytes + ALIGN, dtype=torch.uint8, device=like.device)
        offset = (-raw.data_ptr()) % ALIGN
        return raw[offset:offset + nbytes]
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    offset = (-raw.ctypes.data) % ALIGN
    return raw[offset:offset + nbytes]


def stream_of(x, stream):
    """The CUDA stream handle to run on: stream (an int or an object with .cuda_stream), else
    torch's current stream on x's device for CUDA tensors, else 0 (the default stream)."""
    if stream is not None:
        handle = getattr(stream, "cuda_stream", stream)
        if isinstance(handle, bool) or not isinstance(handle, (int, np.integer)) or \
                not 0 <= int(handle) < 2**64:
            raise _core.Error(f"proxyattn: stream = {stream!r}, expected a CUDA stream handle (an "
                              "integer >= 0) or an object with .cuda_stream")
        return int(handle)
    if is_torch(x) and x.is_cuda:
        return sys.modules["torch"].cuda.current_stream(x.device).cuda_stream
    return 0


def host_cu_seqlens(cu_seqlens):
    """None, or cu_seqlens as a host int32 numpy array (torch CUDA tensors are copied: a sync)."""
    if cu_seqlens is None:
        return None
    if is_torch(cu_seqlens):
        cu_seqlens = cu_seqlens.detach().to("cpu").numpy()
    a = np.asarray(cu_seqlens)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer)):
        raise _core.Error(f"proxyattn: cu_seqlens has dtype {a.dtype} and shape {a.shape}, "
                          "expected a 1-D integer sequence [batch + 1]")
    if a.size < 2:
        # An empty span means "one sequence" to the library; a given cu_seqlens must spell it out.
        raise _core.Error(f"proxyattn: cu_seqlens.size = {a.size}, expected batch + 1 >= 2 (or "
                          "None for one sequence)")
    if a.min() < 0 or a.max() > np.iinfo(np.int32).max:
        raise _core.Error("proxyattn: cu_seqlens values must lie in [0, 2^31)")
    return np.ascontiguousarray(a, dtype=np.int32)


def check_rank(x, name, rank=3, what="[tokens, heads, head_dim]"):
    """Raises proxyattn.Error unless x has a shape of `rank` dimensions (before Python code indexes
    it; the library checks everything else)."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise _core.Error(f"proxyattn: {name} is a {type(x).__name__}, expected an array "
                          f"{what} (numpy or torch)")
    if len(shape) != rank:
        raise _core.Error(f"proxyattn: {name}.ndim = {len(shape)}, expected {rank} ({what})")
    # The sizes as given, not int(): under torch.compile they may be symbolic, and int() would
    # specialize the traced graph on them.
    return tuple(shape)


def scale_of(scale):
    """The softmax scale as the library takes it: None -> 0.0 (1/sqrt(head_dim)), a real number
    -> float; proxyattn.Error for bools, strings and the like (the library checks the range)."""
    if scale is None:
        return 0.0
    if isinstance(scale, bool) or type(scale).__name__ == "bool_" or \
            not hasattr(type(scale), "__float__"):  # numbers, numpy and 0-d torch scalars
        raise _core.Error(f"proxyattn: scale = {scale!r}, expected a positive number or None "
                          "(1/sqrt(head_dim))")
    return float(scale)


def num_threads_of(num_threads):
    """num_threads as an int in [0, 2^31); proxyattn.Error otherwise (bools and floats too)."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or \
            not 0 <= int(num_threads) <= np.iinfo(np.int32).max:
        raise _core.Error(f"proxyattn: num_threads = {num_threads!r}, expected an integer in "
                          "[0, 2^31) (0 = all hardware threads)")
    return int(num_threads)


def to_numpy_bool(mask):
    if is_torch(mask):
        mask = mask.detach().to("cpu").numpy()
    return np.asarray(mask)
