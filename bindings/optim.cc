// Bindings for the optim family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_optim(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
