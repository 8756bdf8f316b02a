// SwiftPM builds a C target from at least one source file; the target is its header,
// include/flashinfer/params.h (the kernel parameter structs, read by Swift and by NVRTC).
#include "flashinfer/params.h"
