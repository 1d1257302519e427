// Bindings for the pool family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_pool(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
