"""Builds proxyattn._core: the library's C++ sources and python/csrc/bindings.cc in one extension.

    pip install --no-build-isolation ./python                     # CPU, plus CUDA where nvcc is found
    PROXYATTN_ENABLE_CUDA=0 pip install --no-build-isolation ./python   # CPU only (what CI does)

Needs setuptools, pybind11 and numpy (no scikit-build, no network). Environment:
    PROXYATTN_ENABLE_CUDA  0 = CPU only, 1 = CUDA required, unset = CUDA when nvcc is found
    PROXYATTN_CUDA_ARCHS   CMake-style list [80-real;80-virtual;90a-real], e.g. "90a-real"
    PROXYATTN_HEAD_DIMS, PROXYATTN_DTYPES   prune CUDA instantiations [64;128], [bf16;fp16]
    PROXYATTN_BUILD_JOBS   parallel compile jobs [all cores]
    CUDA_HOME              where nvcc lives, when not on PATH or in /usr/local/cuda
"""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("PROXYATTN_SOURCE_DIR", os.path.dirname(HERE))

# The library's host sources (CMakeLists.txt: proxyattn_common and proxyattn_cpu), less the ones
# the module does not use (safetensors needs nlohmann_json; the reference and conformance checker
# serve the C++ tests and CLI).
CXX_SOURCES = [
    "src/common/types.cc",
    "src/common/config.cc",
    "src/common/problem.cc",
    "src/common/plan.cc",
    "src/cpu/parallel.cc",
    "src/cpu/estimate.cc",
    "src/cpu/budget.cc",
    "src/cpu/select.cc",
    "src/cpu/attend.cc",
    "src/cpu/pipeline.cc",
    "src/prefill.cc",
]
INST_RE = re.compile(r"^(attend|plan)_(bf16|fp16)_hd(\d+)\.cu$")


def env_list(name, default):
    return [x for x in re.split(r"[;,\s]+", os.environ.get(name, default)) if x]


def find_nvcc():
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda/bin/nvcc"
    return None


def cuda_enabled():
    flag = os.environ.get("PROXYATTN_ENABLE_CUDA", "").strip().lower()
    nvcc = find_nvcc()
    if flag in ("0", "off", "false", "no"):
        return None
    if flag in ("1", "on", "true", "yes") and nvcc is None:
        sys.exit("PROXYATTN_ENABLE_CUDA=1, but nvcc was not found (set CUDA_HOME)")
    return nvcc


def gencode_flags(archs):
    flags = []
    for arch in archs:
        num, _, kind = arch.partition("-")
        if kind == "virtual":
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
        elif kind in ("real", ""):
            flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
            if kind == "":
                flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
        else:
            sys.exit(f"PROXYATTN_CUDA_ARCHS: '{arch}' is not NN, NN-real or NN-virtual")
    return flags


def cuda_sources():
    """(sources, defines): src/cuda/*.cu plus the instantiations PROXYATTN_DTYPES/HEAD_DIMS keep."""
    dtypes = env_list("PROXYATTN_DTYPES", "bf16;fp16")
    head_dims = env_list("PROXYATTN_HEAD_DIMS", "64;128")
    cuda_dir = os.path.join(ROOT, "src", "cuda")
    sources = sorted(os.path.join(cuda_dir, f) for f in os.listdir(cuda_dir) if f.endswith(".cu"))
    defines = set()
    inst_dir = os.path.join(cuda_dir, "inst")
    for f in sorted(os.listdir(inst_dir)):
        m = INST_RE.match(f)
        if m and m.group(2) in dtypes and m.group(3) in head_dims:
            sources.append(os.path.join(inst_dir, f))
            defines.add(f"PROXYATTN_CUDA_{m.group(2).upper()}_HD{m.group(3)}=1")
    return sources, sorted(defines)


def cudart_dir(nvcc):
    home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                os.path.join("targets", "sbsa-linux", "lib")):
        d = os.path.join(home, sub)
        if os.path.exists(os.path.join(d, "libcudart_static.a")):
            return d
    sys.exit(f"libcudart_static.a not found under {home}")


class BuildExt(build_ext):
    """build_ext that first compiles the CUDA sources with nvcc when CUDA is enabled."""

    def build_extension(self, ext):
        nvcc = cuda_enabled()
        if nvcc is not None:
            self.compile_cuda(ext, nvcc)
        else:
            ext.sources.append(os.path.join(ROOT, "src", "common", "no_cuda.cc"))
        super().build_extension(ext)

    def compile_cuda(self, ext, nvcc):
        sources, defines = cuda_sources()
        archs = env_list("PROXYATTN_CUDA_ARCHS", "80-real;80-virtual;90a-real")
        out_dir = os.path.join(os.path.abspath(self.build_temp), "cuda")
        os.makedirs(out_dir, exist_ok=True)
        base = [nvcc, "-c", "-O3", "-std=c++17", "--expt-relaxed-constexpr", "-Xcompiler=-fPIC",
                f"-I{os.path.join(ROOT, 'include')}", f"-I{os.path.join(ROOT, 'src')}"]
        base += [f"-D{d}" for d in defines] + gencode_flags(archs)

        def one(src):
            obj = os.path.join(out_dir, os.path.relpath(src, ROOT).replace(os.sep, "_") + ".o")
            if not (os.path.exists(obj) and os.path.getmtime(obj) >= os.path.getmtime(src)):
                print(" ".join(base + [src, "-o", obj]), flush=True)
                subprocess.check_call(base + [src, "-o", obj])
            return obj

        jobs = int(os.environ.get("PROXYATTN_BUILD_JOBS", "0")) or os.cpu_count() or 1
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            objects = list(pool.map(one, sources))
        ext.extra_objects += objects
        ext.library_dirs.append(cudart_dir(nvcc))
        ext.libraries += ["cudart_static", "dl", "rt"]
        ext.define_macros.append(("PROXYATTN_WITH_CUDA", "1"))


ParallelCompile("PROXYATTN_BUILD_JOBS", default=0).install()

ext = Pybind11Extension(
    "proxyattn._core",
    [os.path.join(HERE, "csrc", "bindings.cc")] + [os.path.join(ROOT, s) for s in CXX_SOURCES],
    include_dirs=[os.path.join(ROOT, "include"), os.path.join(ROOT, "src")],
    cxx_std=17,
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    extra_link_args=["-pthread"],
)

setup(
    name="proxyattn",
    version="0.1.0",
    description="ProxyAttn sparse attention for long-context prefill (numpy, PyTorch, transformers)",
    packages=["proxyattn"],
    package_dir={"proxyattn": os.path.join("proxyattn")},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExt},
    install_requires=["numpy"],
    python_requires=">=3.9",
    zip_safe=False,
)
