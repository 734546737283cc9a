"""Files that survive faults: atomic writes, the run folder's layout and lock, checkpoints, metrics, downloads
and the run cache's clean-up. Imports the ideas; never ``data``, ``integer``, ``training``, ``teaching`` or the
entry points. Standard library otherwise, except checkpoints (torch.save) and downloads (tqdm).
"""
