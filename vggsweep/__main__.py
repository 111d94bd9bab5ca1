"""`python -m vggsweep [-m] [overrides]`: a sweep; see `vggsweep.launch`."""

from vggsweep.launch import main

if __name__ == "__main__":
    main()
