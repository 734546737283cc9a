"""Files that survive faults: atomic writes, the run folder's layout and lock, checkpoints, metrics
and downloads. Standard library only, except checkpoints (torch.save) -- imported by every layer.
"""
