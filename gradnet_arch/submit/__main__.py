"""`python -m gradnet_arch.submit`: the same as the `gradnet-submit` command."""
import sys

from gradnet_arch.submit.cli import main

if __name__ == '__main__':
    sys.exit(main())
