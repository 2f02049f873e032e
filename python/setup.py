"""Builds proxyattn._core: CMake builds the library (libproxyattn.a, the same targets and source
list as the C++ build, CPU micro-kernels with their per-file ISA flags, CUDA where enabled), and
python/csrc/bindings.cc is linked against it as the extension.

    pip install --no-build-isolation ./python                     # CPU, plus CUDA where nvcc is found
    PROXYATTN_ENABLE_CUDA=0 pip install --no-build-isolation ./python   # CPU only (what CI does)

Needs cmake (>= 3.25), setuptools, pybind11 and numpy (no scikit-build, no network). Environment:
    PROXYATTN_ENABLE_CUDA  0 = CPU only, 1 = CUDA required, unset = CUDA when nvcc is found
    PROXYATTN_CUDA_ARCHS   CMake-style list [80-real;80-virtual;90a-real], e.g. "90a-real"
    PROXYATTN_HEAD_DIMS, PROXYATTN_DTYPES   prune CUDA instantiations [64;128], [bf16;fp16]
    PROXYATTN_BUILD_JOBS   parallel compile jobs [all cores]
    CUDA_HOME              where nvcc lives, when not on PATH or in /usr/local/cuda
    CC, CXX                the host compilers (CMake and the extension use the same)
    CMAKE_PREFIX_PATH      where CMake finds nlohmann_json when it is not installed system-wide
    PROXYATTN_CMAKE_ARGS   more CMake arguments for the library's build, e.g. "-DFOO=ON"
"""
import os
import re
import shlex
import shutil
import subprocess
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("PROXYATTN_SOURCE_DIR", os.path.dirname(HERE))


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


def cudart_dir(nvcc):
    home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                os.path.join("targets", "sbsa-linux", "lib")):
        d = os.path.join(home, sub)
        if os.path.exists(os.path.join(d, "libcudart_static.a")):
            return d
    sys.exit(f"libcudart_static.a not found under {home}")


def cmake_cache(build_dir, name):
    """A value from build_dir's CMakeCache.txt, or None."""
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        for line in f:
            m = re.match(rf"^{re.escape(name)}:[A-Z]+=(.*)$", line.strip())
            if m:
                return m.group(1)
    return None


class BuildExt(build_ext):
    """build_ext that first builds the library with CMake, then links the binding against it."""

    def build_extension(self, ext):
        nvcc = cuda_enabled()
        build_dir = os.path.join(os.path.abspath(self.build_temp), "cmake")
        os.makedirs(build_dir, exist_ok=True)
        configure = [
            "cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
            "-DPROXYATTN_BUILD_TESTS=OFF", "-DPROXYATTN_BUILD_TOOLS=OFF",
            "-DPROXYATTN_BUILD_BENCH=OFF", "-DPROXYATTN_WERROR=OFF",
            f"-DPROXYATTN_ENABLE_CUDA={'ON' if nvcc else 'OFF'}",
        ]
        if nvcc:
            archs = ";".join(env_list("PROXYATTN_CUDA_ARCHS", "80-real;80-virtual;90a-real"))
            configure += [f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DCMAKE_CUDA_ARCHITECTURES={archs}"]
        for name, default in (("PROXYATTN_HEAD_DIMS", "64;128"), ("PROXYATTN_DTYPES", "bf16;fp16")):
            configure.append(f"-D{name}={';'.join(env_list(name, default))}")
        configure += shlex.split(os.environ.get("PROXYATTN_CMAKE_ARGS", ""))
        jobs = int(os.environ.get("PROXYATTN_BUILD_JOBS", "0")) or os.cpu_count() or 1
        print(" ".join(configure), flush=True)
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "proxyattn",
                               f"-j{jobs}"])
        library = os.path.join(build_dir, "libproxyattn.a")
        ext.extra_objects.append(library)
        ext.depends.append(library)  # relink when the library changed
        if nvcc:
            cudart = cmake_cache(build_dir, "CUDA_cudart_static_LIBRARY")
            if cudart and os.path.exists(cudart):
                ext.extra_objects.append(cudart)
            else:
                ext.library_dirs.append(cudart_dir(nvcc))
                ext.libraries.append("cudart_static")
            ext.libraries += ["dl", "rt"]
            ext.define_macros.append(("PROXYATTN_WITH_CUDA", "1"))
        super().build_extension(ext)


ext = Pybind11Extension(
    "proxyattn._core",
    [os.path.join(HERE, "csrc", "bindings.cc")],
    include_dirs=[os.path.join(ROOT, "include")],  # the public headers only
    cxx_std=17,
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    extra_link_args=["-pthread"],
)

setup(
    name="proxyattn",
    version="0.1.0",
    description="ProxyAttn sparse attention for long-context prefill (numpy, PyTorch, transformers)",
    packages=["proxyattn", "proxyattn.eval"],
    package_data={"proxyattn.eval": ["words.txt", "data/*"]},
    package_dir={"proxyattn": os.path.join("proxyattn")},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExt},
    install_requires=["numpy"],
    python_requires=">=3.9",
    zip_safe=False,
)
