# CUTLASS sm_90a implicit-GEMM convolution tactics (src/backends/cuda/cutlass/).
#
# Included by the top-level CMakeLists.txt after the CUDA backend is set up.
# CUTLASS is header-only; by default its headers come from the nvidia-cutlass
# Python package (pip install nvidia-cutlass). The kernels use Hopper's wgmma
# and TMA, which exist only in the arch-specific target sm_90a, so they build
# as their own object library for 90a while the rest of kiln keeps
# CMAKE_CUDA_ARCHITECTURES. Without CUTLASS kiln builds without these tactics.

set(KILN_CUTLASS AUTO CACHE STRING "Build the CUTLASS sm_90a convolution tactics: AUTO, ON or OFF")
set_property(CACHE KILN_CUTLASS PROPERTY STRINGS AUTO ON OFF)
# Default: the headers of the nvidia-cutlass package of the `python3` on PATH.
if(NOT KILN_CUTLASS_DIR AND NOT KILN_CUTLASS STREQUAL "OFF")
  find_program(KILN_PYTHON3 NAMES python3 python DOC "Python used to locate the nvidia-cutlass package")
  set(_kiln_cutlass_detected "")
  if(KILN_PYTHON3)
    execute_process(
      COMMAND "${KILN_PYTHON3}" -c
              "import cutlass_library, os; print(os.path.join(os.path.dirname(cutlass_library.__file__), 'source', 'include'))"
      OUTPUT_VARIABLE _kiln_cutlass_detected OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _kiln_cutlass_rc ERROR_QUIET)
    if(NOT _kiln_cutlass_rc EQUAL 0)
      set(_kiln_cutlass_detected "")
    endif()
  endif()
  # Stays empty (and is looked up again next time) when the package is absent.
  set(KILN_CUTLASS_DIR "${_kiln_cutlass_detected}" CACHE PATH
      "CUTLASS include directory (holds cutlass/cutlass.h); default: the nvidia-cutlass Python package's" FORCE)
endif()

set(KILN_WITH_CUTLASS OFF)
set(_kiln_cutlass_why "")
if(NOT KILN_WITH_CUDA)
  set(_kiln_cutlass_why "the CUDA backend is off")
elseif(KILN_CUTLASS STREQUAL "OFF")
  set(_kiln_cutlass_why "KILN_CUTLASS=OFF")
elseif(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
  set(_kiln_cutlass_why "nvcc ${CMAKE_CUDA_COMPILER_VERSION} is older than 12.0")
else()
  set(_kiln_cutlass_inc "${KILN_CUTLASS_DIR}")
  if(_kiln_cutlass_inc AND EXISTS "${_kiln_cutlass_inc}/cutlass/cutlass.h")
    # The conv collectives include cutlass/util/packed_stride.hpp, which lives
    # in tools/util/include next to include/ (in the repository and the wheel).
    get_filename_component(_kiln_cutlass_util "${_kiln_cutlass_inc}/../tools/util/include" ABSOLUTE)
    if(EXISTS "${_kiln_cutlass_util}/cutlass/util/packed_stride.hpp")
      set(KILN_WITH_CUTLASS ON)
    elseif(EXISTS "${_kiln_cutlass_inc}/cutlass/util/packed_stride.hpp")
      set(_kiln_cutlass_util "")
      set(KILN_WITH_CUTLASS ON)
    else()
      set(_kiln_cutlass_why "${_kiln_cutlass_inc} has no tools/util/include/cutlass/util/packed_stride.hpp next to it")
    endif()
  elseif(_kiln_cutlass_inc)
    set(_kiln_cutlass_why "no cutlass/cutlass.h under KILN_CUTLASS_DIR=${_kiln_cutlass_inc}")
  else()
    set(_kiln_cutlass_why "no CUTLASS headers (set KILN_CUTLASS_DIR, or pip install nvidia-cutlass)")
  endif()
endif()

if(KILN_WITH_CUTLASS)
  file(READ "${_kiln_cutlass_inc}/cutlass/version.h" _kiln_cutlass_version_h)
  string(REGEX MATCH "CUTLASS_MAJOR ([0-9]+)" _m "${_kiln_cutlass_version_h}")
  set(_kiln_cutlass_major "${CMAKE_MATCH_1}")
  string(REGEX MATCH "CUTLASS_MINOR ([0-9]+)" _m "${_kiln_cutlass_version_h}")
  set(_kiln_cutlass_minor "${CMAKE_MATCH_1}")
  # The 3.x conv API (ConvUniversal, sm90 collective builders) is needed.
  if(_kiln_cutlass_major LESS 3 OR (_kiln_cutlass_major EQUAL 3 AND _kiln_cutlass_minor LESS 5))
    set(KILN_WITH_CUTLASS OFF)
    set(_kiln_cutlass_why "CUTLASS ${_kiln_cutlass_major}.${_kiln_cutlass_minor} at ${_kiln_cutlass_inc} is older than 3.5")
  endif()
endif()

if(KILN_WITH_CUTLASS)
  message(STATUS "kiln: CUTLASS ${_kiln_cutlass_major}.${_kiln_cutlass_minor} conv tactics ON (${_kiln_cutlass_inc})")
  file(GLOB KILN_CUTLASS_SRC CONFIGURE_DEPENDS src/backends/cuda/cutlass/*.cu src/backends/cuda/cutlass/*.cpp)
  add_library(kiln_cutlass OBJECT ${KILN_CUTLASS_SRC})
  # One kernel per .cu file: make -j compiles the tiles side by side.
  set_target_properties(kiln_cutlass PROPERTIES CUDA_ARCHITECTURES 90a CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                                                POSITION_INDEPENDENT_CODE ON)
  target_include_directories(kiln_cutlass PRIVATE src include)
  target_include_directories(kiln_cutlass SYSTEM PRIVATE "${_kiln_cutlass_inc}")
  if(_kiln_cutlass_util)
    target_include_directories(kiln_cutlass SYSTEM PRIVATE "${_kiln_cutlass_util}")
  endif()
  target_compile_definitions(kiln_cutlass PRIVATE KILN_WITH_CUDA=1 KILN_WITH_CUTLASS=1 CUTLASS_ENABLE_TENSOR_CORE_MMA=1)
  target_compile_options(kiln_cutlass PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
  # cuda_runtime.h for the host-side tactic code.
  target_link_libraries(kiln_cutlass PRIVATE CUDA::cudart)
  target_sources(kiln PRIVATE $<TARGET_OBJECTS:kiln_cutlass>)
  target_compile_definitions(kiln PUBLIC KILN_WITH_CUTLASS=1)
elseif(KILN_CUTLASS STREQUAL "ON")
  message(FATAL_ERROR "KILN_CUTLASS=ON but the CUTLASS tactics cannot be built: ${_kiln_cutlass_why}")
else()
  message(STATUS "kiln: CUTLASS conv tactics OFF (${_kiln_cutlass_why})")
endif()
