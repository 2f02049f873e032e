// python/csrc/bindings.cc: the pybind11 module proxyattn._core. Tensors arrive as DLPack capsules
// (or objects with __dlpack__): numpy arrays on the CPU and torch tensors on the CPU or CUDA, all
// zero copy. No torch header is included; the Python layer (python/proxyattn/*.py) allocates
// outputs and workspaces in the caller's array library and passes the caller's CUDA stream as an
// int. Every library error surfaces as proxyattn.Error (a ValueError) with the C++ message.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if __has_include(<dlpack/dlpack.h>)
#include <dlpack/dlpack.h>
#else
// The DLPack v0.x ABI (dlpack.h, Apache-2.0), declared here for machines without libdlpack-dev.
// Only the unversioned "dltensor" capsule is consumed, whose layout has been stable since v0.2.
extern "C" {
typedef enum { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 } DLDeviceType;
typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;
typedef enum { kDLInt = 0U, kDLUInt = 1U, kDLFloat = 2U, kDLBfloat = 4U } DLDataTypeCode;
typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;
typedef struct {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;
}
#endif

#include "proxyattn/proxyattn.h"

namespace py = pybind11;

namespace proxyattn::python {
namespace {

/// \brief Throws proxyattn::Error with the streamed message (surfaces as proxyattn.Error).
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw error_of(args...);
}

/// \brief fail(args...) unless ok.
template <typename... Args>
void check(bool ok, const Args&... args) {
  if (!ok) fail(args...);
}

// --- DLPack -> TensorView ---------------------------------------------------------------------

/// \brief A borrowed view of a DLPack tensor. The capsule (and so the producer's memory) stays
/// alive as long as this object; the capsule is never consumed, so its own destructor releases it.
struct Borrowed {
  py::object capsule;
  TensorView view;
};

std::string dl_dtype_name(const DLDataType& t) {
  const char* kind = t.code == kDLInt     ? "int"
                     : t.code == kDLUInt  ? "uint"
                     : t.code == kDLFloat ? "float"
                     : t.code == kDLBfloat ? "bfloat"
                                           : "code";
  std::string name = std::string(kind) + std::to_string(t.bits);
  if (t.lanes != 1) name += "x" + std::to_string(t.lanes);
  return name;
}

/// \brief Reads obj (a "dltensor" capsule or an object with __dlpack__) as a TensorView.
/// \param name the argument's name, for error messages
/// \param uint16_is_bf16 read uint16 data as bf16 bit patterns (numpy has no bf16 dtype)
Borrowed borrow(const py::handle& obj, const char* name, bool uint16_is_bf16 = false) {
  Borrowed b;
  if (PyCapsule_CheckExact(obj.ptr())) {
    b.capsule = py::reinterpret_borrow<py::object>(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    b.capsule = obj.attr("__dlpack__")();
  } else {
    fail(name, " is a ", std::string(py::str(py::type::of(obj).attr("__name__"))),
                   ", expected an array with __dlpack__ (numpy, torch) or a DLPack capsule");
  }
  check(PyCapsule_IsValid(b.capsule.ptr(), "dltensor"), name,
                  " is a DLPack capsule that was already consumed, expected a fresh one");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(b.capsule.ptr(), "dltensor"));
  const DLTensor& t = managed->dl_tensor;
  TensorView& v = b.view;
  check(t.ndim >= 0 && t.ndim <= TensorView::kMaxRank, name, ".ndim = ", t.ndim,
                  ", expected at most ", TensorView::kMaxRank);
  check(t.dtype.lanes == 1, name, ".dtype = ", dl_dtype_name(t.dtype),
                  ", expected one lane");
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32) {
    v.dtype = DType::kFloat32;
  } else if (t.dtype.code == kDLFloat && t.dtype.bits == 16) {
    v.dtype = DType::kFloat16;
  } else if (t.dtype.code == kDLBfloat && t.dtype.bits == 16) {
    v.dtype = DType::kBFloat16;
  } else if (uint16_is_bf16 && t.dtype.code == kDLUInt && t.dtype.bits == 16) {
    v.dtype = DType::kBFloat16;
  } else {
    fail(name, ".dtype = ", dl_dtype_name(t.dtype),
                   ", expected float32, bfloat16 or float16");
  }
  if (t.device.device_type == kDLCPU || t.device.device_type == kDLCUDAHost) {
    v.device = Device::kCPU;
    v.device_id = 0;
  } else if (t.device.device_type == kDLCUDA) {
    v.device = Device::kCUDA;
    v.device_id = t.device.device_id;
  } else {
    fail(name, ".device = DLPack device type ", static_cast<int>(t.device.device_type),
                   ", expected cpu (1) or cuda (2)");
  }
  v.rank = t.ndim;
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  // A dimension of extent <= 1 never moves an address, and producers differ in the stride they
  // report for it (torch reports 1 for some views); give it the row-major stride so alignment
  // checks see the layout that matters.
  std::int64_t running = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    v.shape[d] = t.shape[d];
    const bool given = t.strides != nullptr && t.shape[d] > 1;
    v.strides[d] = given ? t.strides[d] : running;
    running = (given ? t.strides[d] : running) * std::max<std::int64_t>(t.shape[d], 1);
  }
  return b;
}

/// \brief borrow(obj), or an empty Borrowed for None.
Borrowed borrow_optional(const py::object& obj, const char* name) {
  if (obj.is_none()) return Borrowed{};
  return borrow(obj, name);
}

/// \brief Reads a workspace (a byte array on the tensors' device) as a Workspace.
Workspace workspace_of(const Borrowed& b) {
  Workspace ws;
  ws.data = b.view.data;
  ws.device = b.view.device;
  ws.device_id = b.view.device_id;
  return ws;
}

Borrowed borrow_workspace(const py::object& obj) {
  Borrowed b;
  if (PyCapsule_CheckExact(obj.ptr())) {
    b.capsule = obj;
  } else if (py::hasattr(obj, "__dlpack__")) {
    b.capsule = obj.attr("__dlpack__")();
  } else {
    fail("workspace is a ", std::string(py::str(py::type::of(obj).attr("__name__"))),
                   ", expected a byte array with __dlpack__ or a DLPack capsule");
  }
  check(PyCapsule_IsValid(b.capsule.ptr(), "dltensor"),
                  "workspace is a DLPack capsule that was already consumed");
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(b.capsule.ptr(), "dltensor"));
  const DLTensor& t = managed->dl_tensor;
  check(t.ndim == 1, "workspace.ndim = ", t.ndim, ", expected 1 (a byte array)");
  check(t.dtype.bits == 8 && t.dtype.lanes == 1 &&
                      (t.dtype.code == kDLUInt || t.dtype.code == kDLInt),
                  "workspace.dtype = ", dl_dtype_name(t.dtype), ", expected uint8");
  check(t.strides == nullptr || t.shape[0] <= 1 || t.strides[0] == 1,
                  "workspace.strides[0] = ", t.strides == nullptr ? 1 : t.strides[0],
                  ", expected 1 (contiguous)");
  TensorView& v = b.view;
  v.rank = 1;
  v.shape[0] = t.shape[0];
  v.strides[0] = 1;
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  if (t.device.device_type == kDLCUDA) {
    v.device = Device::kCUDA;
    v.device_id = t.device.device_id;
  } else {
    check(t.device.device_type == kDLCPU || t.device.device_type == kDLCUDAHost,
                    "workspace.device = DLPack device type ",
                    static_cast<int>(t.device.device_type), ", expected cpu or cuda");
    v.device = Device::kCPU;
  }
  return b;
}

Workspace workspace_from(const Borrowed& b) {
  Workspace ws = workspace_of(b);
  ws.size = static_cast<std::size_t>(b.view.shape[0]);
  return ws;
}

// --- cu_seqlens, runtime ------------------------------------------------------------------------

using Int32Array = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>;

/// \brief Host cu_seqlens; None means one sequence (an empty span).
struct Seqlens {
  std::vector<std::int32_t> values;
  bool given = false;
  CuSeqlens span() const {
    if (!given) return CuSeqlens{};
    return CuSeqlens{values.data(), static_cast<std::int64_t>(values.size())};
  }
};

Seqlens seqlens_of(const py::object& obj) {
  Seqlens s;
  if (obj.is_none()) return s;
  Int32Array a = Int32Array::ensure(obj);
  check(a && a.ndim() == 1, "cu_seqlens must be a 1-D sequence of int32 on the host");
  // An empty span means "one sequence" to the library: a given cu_seqlens must spell it out.
  check(a.size() >= 2, "cu_seqlens.size = ", a.size(), ", expected batch + 1 >= 2 (or None for ",
        "one sequence)");
  s.values.assign(a.data(), a.data() + a.size());
  s.given = true;
  return s;
}

Runtime runtime_of(std::uintptr_t stream, int num_threads) {
  Runtime r;
  r.stream = reinterpret_cast<void*>(stream);
  r.num_threads = num_threads;
  return r;
}

// --- Plan ---------------------------------------------------------------------------------------

/// \brief A Plan plus the Python object owning its workspace, which must outlive the plan.
struct PyPlan {
  Plan plan;
  py::object workspace;
};

PyPlan wrap_plan(const Plan& plan, const py::object& workspace_owner) {
  PyPlan p;
  p.plan = plan;
  p.workspace = workspace_owner;
  return p;
}

template <typename T>
py::array_t<T> to_numpy(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> a(shape);
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

/// \brief The plan copied into another workspace (copy_plan(): host or device, synchronizes).
PyPlan copy_into(const PyPlan& src, const py::object& workspace, std::uintptr_t stream) {
  Borrowed b = borrow_workspace(workspace);
  const Workspace ws = workspace_from(b);
  Plan copied;
  {
    py::gil_scoped_release release;
    copied = copy_plan(src.plan, ws, runtime_of(stream, 0));
  }
  return wrap_plan(copied, workspace);
}

py::dict layout_dict(const PlanLayout& l) {
  py::dict d;
  d["batch"] = l.batch;
  d["num_qo_heads"] = l.num_qo_heads;
  d["num_kv_heads"] = l.num_kv_heads;
  d["num_proxy_heads"] = l.num_proxy_heads;
  d["block_size"] = l.block_size;
  d["stride"] = l.stride;
  d["head_dim"] = l.head_dim;
  d["cu_seqlens"] = l.cu_seqlens;
  d["num_blocks"] = l.num_blocks;
  d["is_dense"] = std::vector<bool>(l.is_dense.begin(), l.is_dense.end());
  return d;
}

// --- shapes -------------------------------------------------------------------------------------

/// \brief The shape of a prefill from its sizes alone: problem_shape() over views that hold the
/// sizes at a placeholder address (it reads shapes, never data), so the checks stay the library's.
ProblemShape shape_of(std::int64_t total_tokens, std::int64_t num_qo_heads,
                      std::int64_t num_kv_heads, std::int64_t head_dim, const Seqlens& seqs) {
  check(total_tokens >= 0, "total_tokens = ", total_tokens, ", expected >= 0");
  auto view = [&](std::int64_t heads) {
    TensorView v;
    v.data = reinterpret_cast<void*>(std::uintptr_t{256});
    v.dtype = DType::kBFloat16;
    v.device = Device::kCPU;
    v.rank = 3;
    v.shape[0] = total_tokens;
    v.shape[1] = heads;
    v.shape[2] = head_dim;
    v.strides[2] = 1;
    v.strides[1] = head_dim;
    v.strides[0] = heads * head_dim;
    return v;
  };
  return problem_shape(view(num_qo_heads), view(num_kv_heads), seqs.span());
}

/// \brief A Config from field texts (config_fields() names -> set_config_field() text); fields
/// not named keep the C++ defaults.
Config config_from(const std::map<std::string, std::string>& fields) {
  Config c;
  for (const auto& [name, text] : fields) set_config_field(c, name, text);
  return c;
}

/// \brief Every field of a Config as get_config_field() text.
py::dict config_values(const Config& c) {
  py::dict d;
  for (const ConfigField& f : config_fields()) d[f.name] = get_config_field(c, f.name);
  return d;
}

const char* device_name_of(Device d) { return d == Device::kCUDA ? "cuda" : "cpu"; }

}  // namespace
}  // namespace proxyattn::python

PYBIND11_MODULE(_core, m) {
  using namespace proxyattn;          // NOLINT
  using namespace proxyattn::python;  // NOLINT
  m.doc() = "proxyattn._core: the C++ library over DLPack (use the proxyattn package instead)";
  m.attr("__version__") = PROXYATTN_VERSION_STRING;
#ifdef PROXYATTN_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  // proxyattn.Error subclasses ValueError and carries the C++ message.
  py::register_exception<Error>(m, "Error", PyExc_ValueError);

  // Config follows the one field table (include/proxyattn/config.h): names, types, sentinel
  // words and help come from config_fields(), values travel as set/get_config_field() text.
  py::class_<Config>(m, "Config")
      .def(py::init<>(), "the default Config")
      .def("values", &config_values, "{field name: value text}, as make_config() reads it")
      .def("validate", &Config::validate)
      .def("dense_below", &Config::dense_below);
  m.def(
      "config_fields",
      [] {
        py::list fields;
        for (const ConfigField& f : config_fields()) {
          py::dict d;
          d["name"] = f.name;
          d["flag"] = f.flag;
          d["type"] = f.type;
          d["unset"] = f.unset;
          d["help"] = f.help;
          fields.append(d);
        }
        return fields;
      },
      "the Config field table: [{name, flag, type, unset, help}] in declaration order");
  m.def("make_config", &config_from, py::arg("fields"),
        "a Config from {field name: value text}; unnamed fields keep their defaults");

  py::class_<PyPlan>(m, "Plan")
      .def_property_readonly("layout", [](const PyPlan& p) { return layout_dict(p.plan.layout); })
      .def_property_readonly("device", [](const PyPlan& p) { return device_name_of(p.plan.device); })
      .def_property_readonly("device_id", [](const PyPlan& p) { return p.plan.device_id; })
      .def_property_readonly("scale", [](const PyPlan& p) { return p.plan.scale; })
      .def_readonly("workspace", &PyPlan::workspace)
      .def("stats",
           [](const PyPlan& p) {
             Plan::Stats s;
             {
               py::gil_scoped_release release;
               s = p.plan.stats();
             }
             const auto batch = static_cast<py::ssize_t>(p.plan.layout.batch);
             const auto heads = static_cast<py::ssize_t>(p.plan.layout.num_qo_heads);
             return py::make_tuple(to_numpy(s.budgets, {batch, heads}),
                                   to_numpy(s.density, {batch, heads}),
                                   to_numpy(s.seq_density, {batch}), s.density_weighted);
           },
           "(budgets [batch, heads] int32 blocks, density [batch, heads] float32, "
           "seq_density [batch] float64, density_weighted); synchronizes on CUDA")
      .def("to_dense",
           [](const PyPlan& p) {
             std::vector<std::uint8_t> mask;
             {
               py::gil_scoped_release release;
               mask = p.plan.to_dense();
             }
             return to_numpy(mask, {static_cast<py::ssize_t>(mask.size())});
           },
           "selected blocks, flat uint8 [sum_i heads * nb_i * nb_i]; synchronizes on CUDA")
      .def("host_arrays",
           [](const PyPlan& p) {
             HostPlan h;
             {
               py::gil_scoped_release release;
               h = copy_to_host(p.plan);
             }
             py::dict d;
             const auto n = [](const auto& v) { return static_cast<py::ssize_t>(v.size()); };
             d["group_order"] = to_numpy(h.group_order, {n(h.group_order)});
             d["last_order"] = to_numpy(h.last_order, {n(h.last_order)});
             d["counts"] = to_numpy(h.counts, {n(h.counts)});
             d["budgets"] = to_numpy(h.budgets, {n(h.budgets)});
             d["density"] = to_numpy(h.density, {n(h.density)});
             return d;
           },
           "host copies of the plan's arrays (flat, in the workspace layout)")
      .def("copy_into", &copy_into, py::arg("workspace"), py::arg("stream") = 0,
           "this plan copied into another workspace (host or device); synchronizes");

  m.def(
      "workspace_size",
      [](const py::object& q, const py::object& k, const py::object& cu_seqlens,
         const Config& config) {
        const Borrowed bq = borrow(q, "q", true), bk = borrow(k, "k", true);
        const Seqlens seqs = seqlens_of(cu_seqlens);
        return workspace_size(problem_shape(bq.view, bk.view, seqs.span()), config);
      },
      py::arg("q"), py::arg("k"), py::arg("cu_seqlens"), py::arg("config"));

  m.def(
      "workspace_size_for_shape",
      [](std::int64_t total_tokens, std::int64_t num_qo_heads, std::int64_t num_kv_heads,
         std::int64_t head_dim, const py::object& cu_seqlens, const Config& config) {
        const Seqlens seqs = seqlens_of(cu_seqlens);
        return workspace_size(shape_of(total_tokens, num_qo_heads, num_kv_heads, head_dim, seqs),
                              config);
      },
      py::arg("total_tokens"), py::arg("num_qo_heads"), py::arg("num_kv_heads"),
      py::arg("head_dim"), py::arg("cu_seqlens"), py::arg("config"));

  m.def(
      "plan",
      [](const py::object& q, const py::object& k, const py::object& cu_seqlens,
         const Config& config, const py::object& workspace, std::uintptr_t stream,
         int num_threads, bool bf16) {
        const Borrowed bq = borrow(q, "q", bf16), bk = borrow(k, "k", bf16);
        const Borrowed bw = borrow_workspace(workspace);
        const Seqlens seqs = seqlens_of(cu_seqlens);
        const Workspace ws = workspace_from(bw);
        Plan result;
        {
          py::gil_scoped_release release;
          result = plan(bq.view, bk.view, seqs.span(), config, ws, runtime_of(stream, num_threads));
        }
        return wrap_plan(result, workspace);
      },
      py::arg("q"), py::arg("k"), py::arg("cu_seqlens"), py::arg("config"), py::arg("workspace"),
      py::arg("stream") = 0, py::arg("num_threads") = 0, py::arg("bf16") = false);

  m.def(
      "attend",
      [](const py::object& q, const py::object& k, const py::object& v, const PyPlan& p,
         const py::object& out, const py::object& lse, std::uintptr_t stream, int num_threads,
         bool bf16) {
        const Borrowed bq = borrow(q, "q", bf16), bk = borrow(k, "k", bf16),
                       bv = borrow(v, "v", bf16), bo = borrow(out, "out", bf16);
        const Borrowed bl = borrow_optional(lse, "lse");
        const TensorView* lse_view = lse.is_none() ? nullptr : &bl.view;
        py::gil_scoped_release release;
        attend(bq.view, bk.view, bv.view, p.plan, bo.view, lse_view,
               runtime_of(stream, num_threads));
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("plan"), py::arg("out"),
      py::arg("lse") = py::none(), py::arg("stream") = 0, py::arg("num_threads") = 0,
      py::arg("bf16") = false);

  m.def(
      "prefill",
      [](const py::object& q, const py::object& k, const py::object& v,
         const py::object& cu_seqlens, const Config& config, const py::object& workspace,
         const py::object& out, const py::object& lse, std::uintptr_t stream, int num_threads,
         bool bf16) {
        const Borrowed bq = borrow(q, "q", bf16), bk = borrow(k, "k", bf16),
                       bv = borrow(v, "v", bf16), bo = borrow(out, "out", bf16);
        const Borrowed bl = borrow_optional(lse, "lse");
        const Borrowed bw = borrow_workspace(workspace);
        const Seqlens seqs = seqlens_of(cu_seqlens);
        const Workspace ws = workspace_from(bw);
        const TensorView* lse_view = lse.is_none() ? nullptr : &bl.view;
        Plan result;
        {
          py::gil_scoped_release release;
          result = prefill(bq.view, bk.view, bv.view, seqs.span(), config, ws, bo.view, lse_view,
                           runtime_of(stream, num_threads));
        }
        return wrap_plan(result, workspace);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cu_seqlens"), py::arg("config"),
      py::arg("workspace"), py::arg("out"), py::arg("lse") = py::none(), py::arg("stream") = 0,
      py::arg("num_threads") = 0, py::arg("bf16") = false);

  m.def(
      "dense",
      [](const py::object& q, const py::object& k, const py::object& v,
         const py::object& cu_seqlens, const py::object& out, const py::object& lse, float scale,
         std::uintptr_t stream, int num_threads, bool bf16) {
        const Borrowed bq = borrow(q, "q", bf16), bk = borrow(k, "k", bf16),
                       bv = borrow(v, "v", bf16), bo = borrow(out, "out", bf16);
        const Borrowed bl = borrow_optional(lse, "lse");
        const Seqlens seqs = seqlens_of(cu_seqlens);
        const TensorView* lse_view = lse.is_none() ? nullptr : &bl.view;
        py::gil_scoped_release release;
        dense(bq.view, bk.view, bv.view, seqs.span(), bo.view, lse_view, scale,
              runtime_of(stream, num_threads));
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("cu_seqlens"), py::arg("out"),
      py::arg("lse") = py::none(), py::arg("scale") = 0.0f, py::arg("stream") = 0,
      py::arg("num_threads") = 0, py::arg("bf16") = false);

  m.def(
      "plan_from_block_mask",
      [](std::int64_t total_tokens, std::int64_t num_qo_heads, std::int64_t num_kv_heads,
         std::int64_t head_dim, const py::object& cu_seqlens, int block_size, int num_proxy_heads,
         const py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>& mask,
         const py::object& workspace, float scale) {
        const Seqlens seqs = seqlens_of(cu_seqlens);
        const ProblemShape shape = shape_of(total_tokens, num_qo_heads, num_kv_heads, head_dim, seqs);
        std::size_t expected = 0;
        for (std::int64_t i = 0; i < shape.batch(); ++i) {
          const std::int64_t nb = (shape.seq_len(i) + block_size - 1) / std::max(block_size, 1);
          expected += static_cast<std::size_t>(num_qo_heads * nb * nb);
        }
        check(block_size == 64 || block_size == 128, "block_size = ", block_size,
                        ", expected 64 or 128");
        check(static_cast<std::size_t>(mask.size()) == expected, "mask.size = ",
                        mask.size(), ", expected sum over sequences of num_qo_heads * nb * nb = ",
                        expected);
        const Borrowed bw = borrow_workspace(workspace);
        const Workspace ws = workspace_from(bw);
        Plan result = plan_from_block_mask(shape, block_size, num_proxy_heads, mask.data(), ws, scale);
        return wrap_plan(result, workspace);
      },
      py::arg("total_tokens"), py::arg("num_qo_heads"), py::arg("num_kv_heads"),
      py::arg("head_dim"), py::arg("cu_seqlens"), py::arg("block_size"), py::arg("num_proxy_heads"),
      py::arg("mask"), py::arg("workspace"), py::arg("scale") = 0.0f);

  m.def(
      "is_supported",
      [](const std::string& dtype, std::int64_t head_dim, const std::string& device) {
        check(device == "cpu" || device == "cuda", "device = '", device,
                        "', expected cpu or cuda");
        return is_supported(parse_dtype(dtype), head_dim,
                            device == "cuda" ? Device::kCUDA : Device::kCPU);
      },
      py::arg("dtype"), py::arg("head_dim"), py::arg("device") = "cpu");
  m.def("cuda_available", &cuda_available, "whether this build has CUDA and sees a device");
  m.def("device_name", &device_name, py::arg("device_id") = 0);
}
