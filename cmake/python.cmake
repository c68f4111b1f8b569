# Python bindings (python/): the `kiln._kiln` extension built with nanobind.
#
# Included at the end of the top-level CMakeLists.txt. On by default only
# when scikit-build-core drives the build (`pip install .`, see
# pyproject.toml); a plain CMake build can opt in with -DKILN_PYTHON=ON once
# nanobind is installed for the Python it finds.
if(DEFINED SKBUILD)
  set(_kiln_python_default ON)
else()
  set(_kiln_python_default OFF)
endif()
option(KILN_PYTHON "Build the kiln Python module (nanobind)" ${_kiln_python_default})
if(NOT KILN_PYTHON)
  return()
endif()

# The module is a shared object that links libkiln statically, so every
# object in libkiln must be position-independent.
get_target_property(_kiln_pic kiln POSITION_INDEPENDENT_CODE)
if(NOT _kiln_pic)
  message(FATAL_ERROR "KILN_PYTHON needs libkiln built with -fPIC: configure with "
                      "-DCMAKE_POSITION_INDEPENDENT_CODE=ON")
endif()

find_package(Python 3.9 COMPONENTS Interpreter Development.Module REQUIRED)
# nanobind ships its CMake package inside the Python package.
if(NOT nanobind_DIR)
  execute_process(COMMAND "${Python_EXECUTABLE}" -m nanobind --cmake_dir
                  OUTPUT_VARIABLE _kiln_nb_dir OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE _kiln_nb_rc ERROR_QUIET)
  if(_kiln_nb_rc EQUAL 0)
    list(APPEND CMAKE_PREFIX_PATH "${_kiln_nb_dir}")
  endif()
endif()
find_package(nanobind CONFIG QUIET)
if(NOT nanobind_FOUND)
  message(FATAL_ERROR "KILN_PYTHON=ON needs nanobind for ${Python_EXECUTABLE}: `${Python_EXECUTABLE} -m pip "
                      "install nanobind`, or build the module with `pip install .`")
endif()

nanobind_add_module(_kiln NB_STATIC python/kiln_module.cpp python/calibrator.cpp)
target_link_libraries(_kiln PRIVATE kiln)
# kiln's headers are strict C++17; nanobind's own sources warn under -Wextra.
target_compile_options(_kiln PRIVATE -Wno-missing-field-initializers)

# Installed next to python/kiln/__init__.py inside the wheel.
install(TARGETS _kiln LIBRARY DESTINATION kiln COMPONENT kiln_python)
