"""The one training engine of the course (``loop``): run folder, checkpoints (``checkpoint``),
loss log and sample grids, Ctrl-C / SIGTERM, exact resume, load-or-train, DDP (``ddp``)."""
