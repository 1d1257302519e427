// Bindings for the rnn family (not written yet: registers nothing).
#include "arrays.h"

namespace nnkern {
namespace bind {

void bind_rnn(py::module_& m) {}

}  // namespace bind
}  // namespace nnkern
