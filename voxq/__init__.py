"""voxq's command line: synth, up, bench, keys."""
