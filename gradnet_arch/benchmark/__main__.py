"""`python -m gradnet_arch.benchmark ...`: see gradnet_arch.benchmark.cli."""
from gradnet_arch.benchmark.cli import main

if __name__ == '__main__':
    main()
