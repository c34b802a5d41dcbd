"""Reports built from results directories alone: paired significance, checkpoint trajectories, the HTML view."""
