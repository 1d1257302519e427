// Bindings for the conv family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_conv(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
