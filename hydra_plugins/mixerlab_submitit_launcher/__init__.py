"""hydra-submitit-launcher launchers that fail only a dead job, not the whole sweep."""
