# src/cpu/kernels/kernels.cmake: the CPU micro-kernels, added to proxyattn_cpu. Each ISA tier is
# its own translation unit with its own target flags; the rest of the library stays baseline
# x86-64 and reaches the tiers through run-time dispatch (kernels/dispatch.cc).
set(_pa_kernels ${CMAKE_CURRENT_LIST_DIR})
target_sources(proxyattn_cpu PRIVATE
  ${_pa_kernels}/dispatch.cc
  ${_pa_kernels}/pack.cc
  ${_pa_kernels}/peak.cc
  ${_pa_kernels}/attend_avx512.cc
  ${_pa_kernels}/attend_avx512bf16.cc
  ${_pa_kernels}/amx.cc
)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(_pa_avx512 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma)
  set_source_files_properties(${_pa_kernels}/attend_avx512.cc PROPERTIES
    COMPILE_OPTIONS "${_pa_avx512}")
  set_source_files_properties(${_pa_kernels}/attend_avx512bf16.cc PROPERTIES
    COMPILE_OPTIONS "${_pa_avx512};-mavx512bf16")
  set_source_files_properties(${_pa_kernels}/amx.cc PROPERTIES
    COMPILE_OPTIONS "${_pa_avx512};-mavx512bf16;-mamx-tile;-mamx-bf16")
endif()
