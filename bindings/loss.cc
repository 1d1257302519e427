// Bindings for the loss family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_loss(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
