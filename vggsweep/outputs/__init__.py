"""What a sweep gives its reader: the leaderboard, the report page, the plots, the end-of-sweep
outputs and the confidence retraining, all read from the store (`vggsweep.tracking.results`)."""
