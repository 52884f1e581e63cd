// export.hpp: the library builds with hidden visibility; what headers call into is exported.
#pragma once

#define FIBERLOOP_API __attribute__((visibility("default")))
