// stb_image and stb_image_write compiled into image_decode_fuzz, on their own
// so that fuzz/CMakeLists.txt can give stb's code (and only it) its sanitizer
// exemption. kiln_cli links Debian's libstb, built from the same header.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
