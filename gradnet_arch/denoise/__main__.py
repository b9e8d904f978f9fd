"""`python -m gradnet_arch.denoise` = `gradnet-denoise`."""
from gradnet_arch.denoise.cli import main

if __name__ == '__main__':
    main()
