// The target's functions are all static inline in include/cpu_hints.h; SwiftPM needs a source file.
#include "cpu_hints.h"
