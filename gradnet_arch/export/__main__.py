"""`python -m gradnet_arch.export` = `gradnet-export`."""
from gradnet_arch.export.cli import main

if __name__ == '__main__':
    main()
