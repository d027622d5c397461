// Image decoding through libjpeg-turbo and libpng. C, because both libraries report errors by
// longjmp, which Swift cannot catch.
#pragma once
#include <stddef.h>
