// Bindings for the norm family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_norm(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
