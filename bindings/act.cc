// Bindings for the act family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_act(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
