"""What the voxq API and the workers share: config, job schema, job store, storage, task names."""
