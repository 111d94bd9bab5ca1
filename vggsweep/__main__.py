"""`python -m vggsweep [-m] [overrides]`: a sweep; see `vggsweep.job.launch`."""

from vggsweep.job.launch import main

if __name__ == "__main__":
    main()
