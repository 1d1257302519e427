"""Data-parallel training over MPI: the code lives in nnkern/examples/distributed_train.py
(python/nnkern/examples in this repository). Needs `pip install "nnkern[mpi]"`; run it as
mpiexec -n 2 python examples/distributed_train.py --model cnn"""

from nnkern.examples.distributed_train import main

if __name__ == "__main__":
    main()
